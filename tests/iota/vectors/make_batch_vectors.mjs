// Builds the grid's batch payouts with the official IOTA TypeScript SDK and prints
// their inputs, bytes, digests and signatures as JSON (batch_ts_sdk.json).
//
//   cd tests/iota/vectors && npm ci && node make_batch_vectors.mjs > batch_ts_sdk.json
//
// (package.json + package-lock.json pin @iota/iota-sdk exactly; node_modules is ignored.)
// Each batch is what an application writes with the SDK to pay many recipients from
// one coin: optionally tx.mergeCoins(tx.gas, [coins]) when the gas coin alone is too
// small, then tx.splitCoins(tx.gas, [a1, a2, …]) and one
// tx.transferObjects([coin_i], recipient_i) per payment. The SDK never merges equal
// pure values: a repeated amount or recipient is a new input each time, and
// tests/iota/test_batch_vectors.py proves our builder does exactly the same.
import { readFileSync } from 'node:fs';

import { Transaction } from '@iota/iota-sdk/transactions';
import { Ed25519Keypair } from '@iota/iota-sdk/keypairs/ed25519';

const SDK_VERSION = '1.15.1'; // checked against the installed package below
const SECRET = 'c0035e1c8cda12eb55aa656a8a9ddc29cfa36c08edf9a16a95d8857253a3aa05'; // tests/data vectors keypair[0]
const GAS_PRICE = 1000;
const GAS_BUDGET = 50_000_000;

function hexBytes(hex) {
  return Uint8Array.from(hex.match(/../g).map((b) => parseInt(b, 16)));
}

// base58 (Bitcoin alphabet), as IOTA digests use.
const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function bs58(bytes) {
  let n = 0n;
  for (const b of bytes) n = n * 256n + BigInt(b);
  let out = '';
  while (n > 0n) { out = ALPHABET[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b === 0) out = '1' + out; else break; }
  return out;
}

// A coin reference whose 32-byte digest is `fill` repeated (base64 in the JSON, as Python reads it).
function coinRef(idByte, version, fill) {
  return { object_id: '0x' + idByte.repeat(32), version, digest_b64: Buffer.alloc(32, fill).toString('base64') };
}

// Distinct recipients 0x0001…0001, 0x0002…0002, …; amounts that vary in every byte position.
function recipient(i) {
  return '0x' + (i + 1).toString(16).padStart(4, '0').repeat(16);
}
function payments(n) {
  return Array.from({ length: n }, (_, i) => ({ recipient: recipient(i), amount: String(1_000_003 * (i + 1) + i) }));
}

const GAS = [coinRef('ee', 10, 7)];
const cases = [
  { name: 'one', gas: GAS, merge: [], payments: payments(1) },
  { name: 'two', gas: GAS, merge: [], payments: payments(2) },
  {
    name: 'three',
    gas: GAS,
    merge: [],
    payments: [
      { recipient: recipient(0), amount: '1' },
      { recipient: recipient(1), amount: '1000000000' },
      { recipient: recipient(2), amount: '18446744073709551615' },
    ],
  },
  { name: 'hundred', gas: GAS, merge: [], payments: payments(100) },
  {
    // One recipient paid twice (two statements of one producer), and an amount repeated.
    name: 'repeated_recipient',
    gas: GAS,
    merge: [],
    payments: [
      { recipient: recipient(0), amount: '5000' },
      { recipient: recipient(1), amount: '7000' },
      { recipient: recipient(0), amount: '5000' },
    ],
  },
  {
    // The gas coin alone is too small: two more coins are merged into it first.
    name: 'merge',
    gas: [coinRef('ee', 10, 7), coinRef('ef', 3, 8)],
    merge: [coinRef('a1', 5, 9), coinRef('a2', 6, 10)],
    payments: payments(3),
  },
  // The largest batch the planner makes (one SplitCoins takes at most 511 amounts).
  { name: 'largest', gas: GAS, merge: [], payments: payments(511) },
];

function ref(coin) {
  return { objectId: coin.object_id, version: coin.version, digest: bs58(Buffer.from(coin.digest_b64, 'base64')) };
}

function build(keypair, c) {
  const tx = new Transaction();
  if (c.merge.length) {
    tx.mergeCoins(tx.gas, c.merge.map((coin) => tx.objectRef(ref(coin))));
  }
  const coins = tx.splitCoins(tx.gas, c.payments.map((p) => BigInt(p.amount)));
  c.payments.forEach((p, i) => tx.transferObjects([coins[i]], p.recipient));
  tx.setSender(keypair.getPublicKey().toIotaAddress());
  tx.setGasPrice(GAS_PRICE);
  tx.setGasBudget(GAS_BUDGET);
  tx.setGasPayment(c.gas.map(ref));
  return tx;
}

const installed = JSON.parse(
  readFileSync(new URL('./node_modules/@iota/iota-sdk/package.json', import.meta.url), 'utf8'),
).version;
if (installed !== SDK_VERSION) {
  throw new Error(`@iota/iota-sdk ${installed} is installed, ${SDK_VERSION} expected (run npm ci)`);
}
const keypair = Ed25519Keypair.fromSecretKey(hexBytes(SECRET));
const out = {
  about: `Batch payouts built with @iota/iota-sdk ${SDK_VERSION} (tests/iota/vectors/make_batch_vectors.mjs)`,
  secret_hex: SECRET,
  sender: keypair.getPublicKey().toIotaAddress(),
  gas_price: GAS_PRICE,
  gas_budget: GAS_BUDGET,
  transactions: {},
};
for (const c of cases) {
  const tx = build(keypair, c);
  const bytes = await tx.build();
  const { signature } = await keypair.signTransaction(bytes);
  out.transactions[c.name] = {
    gas_payment: c.gas,
    merge_coins: c.merge,
    payments: c.payments,
    tx_bytes_b64: Buffer.from(bytes).toString('base64'),
    digest: await tx.getDigest(),
    serialized_signature_b64: signature,
  };
}
console.log(JSON.stringify(out, null, 1));

// Builds the IOTA Notarization transactions of the audit trail with the official
// TypeScript SDK and prints their bytes, digests and signatures as JSON.
//
//   npm install @iota/iota-sdk@1.15.1 && node make_notarization_vectors.mjs > notarization_ts_sdk.json
//
// The programmable transactions have the exact layout the official notarization
// SDK (iotaledger/notarization, notarization-rs: operations.rs new_dynamic and
// update_state, built with iota-types' ProgrammableTransactionBuilder, which
// deduplicates identical pure inputs) produces: the clock first, then the
// state's data and metadata, new_state_from_bytes, the description and
// updatable metadata (reusing an equal input), timelock::none, create.
import { Transaction, Inputs } from '@iota/iota-sdk/transactions';
import { bcs } from '@iota/iota-sdk/bcs';
import { Ed25519Keypair } from '@iota/iota-sdk/keypairs/ed25519';

const SECRET = 'c0035e1c8cda12eb55aa656a8a9ddc29cfa36c08edf9a16a95d8857253a3aa05'; // vectors keypair[0]
const PACKAGE = '0x00412bd469b7f980227c6c574090348239852e43aa07818b315854fdd8a2d25f'; // testnet
const GAS = { objectId: '0x' + 'ee'.repeat(32), version: 10, digest: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=' };

function hexBytes(hex) {
  return Uint8Array.from(hex.match(/../g).map((b) => parseInt(b, 16)));
}

const keypair = Ed25519Keypair.fromSecretKey(hexBytes(SECRET));
const sender = keypair.getPublicKey().toIotaAddress();
const payload = hexBytes('01' + '11'.repeat(32) + '000000000000002a' + '22'.repeat(32));
const metadata = 'p2p_energy audit roots 40-42 of grid grid-1';
const description = 'p2p_energy audit roots of grid grid-1';
const digestB58 = (bytes) => bs58(bytes);

function clock(tx) {
  return tx.object(Inputs.SharedObjectRef({ objectId: '0x6', initialSharedVersion: 1, mutable: false }));
}

function gas(tx) {
  tx.setSender(sender);
  tx.setGasPrice(1000);
  tx.setGasBudget(10_000_000);
  tx.setGasPayment([{ objectId: GAS.objectId, version: GAS.version, digest: bs58(Buffer.from(GAS.digest, 'base64')) }]);
}

function create() {
  const tx = new Transaction();
  const c = clock(tx);
  const data = tx.pure(bcs.vector(bcs.u8()).serialize(payload));
  const none = tx.pure(bcs.option(bcs.string()).serialize(null));
  const state = tx.moveCall({ target: `${PACKAGE}::notarization::new_state_from_bytes`, arguments: [data, none] });
  const desc = tx.pure(bcs.option(bcs.string()).serialize(description));
  const lock = tx.moveCall({ target: `${PACKAGE}::timelock::none` });
  tx.moveCall({
    target: `${PACKAGE}::dynamic_notarization::create`,
    typeArguments: ['vector<u8>'],
    arguments: [state, desc, none, lock, c],
  });
  gas(tx);
  return tx;
}

function update() {
  const tx = new Transaction();
  const object = tx.object(
    Inputs.ObjectRef({ objectId: '0x' + 'ab'.repeat(32), version: 7, digest: bs58(new Uint8Array(32).fill(3)) }),
  );
  const data = tx.pure(bcs.vector(bcs.u8()).serialize(payload));
  const meta = tx.pure(bcs.option(bcs.string()).serialize(metadata));
  const state = tx.moveCall({ target: `${PACKAGE}::notarization::new_state_from_bytes`, arguments: [data, meta] });
  const c = clock(tx);
  tx.moveCall({
    target: `${PACKAGE}::notarization::update_state`,
    typeArguments: ['vector<u8>'],
    arguments: [object, state, c],
  });
  gas(tx);
  return tx;
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

const out = { about: 'IOTA Notarization transactions built with @iota/iota-sdk 1.15.1 (make_notarization_vectors.mjs)', package: PACKAGE, sender, payload_hex: Buffer.from(payload).toString('hex'), metadata, description, transactions: {} };
for (const [name, tx] of [['create', create()], ['update', update()]]) {
  const bytes = await tx.build();
  const { signature } = await keypair.signTransaction(bytes);
  out.transactions[name] = {
    tx_bytes_hex: Buffer.from(bytes).toString('hex'),
    digest: await tx.getDigest(),
    serialized_signature_b64: signature,
  };
}
console.log(JSON.stringify(out, null, 1));

"""``p2p-grid clear BOOK.json [-o FILE]``: clear one interval's order book offline.

Operators use it to replay or try out an interval. The result is the JSON of
:func:`grid_server.domain.market.jsonio.result_json`; an invalid book is
reported on stderr with the item and field at fault, exit status 2, and
nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grid_server.domain.market import BookError, clear
from grid_server.domain.market.jsonio import dumps_result, loads_book

EXIT_BAD_INPUT = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clear",
        help="clear an order book offline and print the result as JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("book", type=Path, help="order book JSON (see examples/book.json)")
    parser.add_argument("-o", "--output", type=Path, help="write the result here instead of stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    book_path: Path = args.book
    try:
        text = book_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"p2p-grid clear: cannot read {book_path}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = clear(loads_book(text))
    except BookError as exc:
        print(f"p2p-grid clear: {book_path}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    output = dumps_result(result)
    if args.output is None:
        sys.stdout.write(output)
    else:
        args.output.write_text(output, encoding="utf-8")
    return 0

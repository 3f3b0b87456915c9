"""Reading QR codes back with an independent decoder (zxing-cpp), as a phone would.

The grid draws its codes with segno; a test that only compared segno's output
with segno's output could not fail. These helpers turn what a person sees (a
terminal's half-block characters, a browser's pixels) into an image and let
ZXing read it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zxingcpp

# A half-block character is two modules, top and bottom; True is a light module.
_HALF_BLOCKS = {"█": (True, True), " ": (False, False), "▀": (True, False), "▄": (False, True)}
PIXELS_PER_MODULE = 8


def terminal_qr_matrix(text: str) -> list[list[bool]]:
    """The modules (True = dark) of a QR code printed as half blocks, light modules drawn."""
    lines = [line for line in text.splitlines() if line and set(line) <= set(_HALF_BLOCKS)]
    rows: list[list[bool]] = []
    for line in lines:
        pairs = [_HALF_BLOCKS[char] for char in line]
        rows.append([not top for top, _ in pairs])
        rows.append([not bottom for _, bottom in pairs])
    return rows


def decode_matrix(matrix: list[list[bool]]) -> list[str]:
    """What ZXing reads from a module matrix drawn black on white with a quiet zone."""
    modules = np.array([[0 if dark else 255 for dark in row] for row in matrix], dtype=np.uint8)
    image = np.kron(modules, np.ones((PIXELS_PER_MODULE, PIXELS_PER_MODULE), dtype=np.uint8))
    image = np.pad(image, 4 * PIXELS_PER_MODULE, constant_values=255)
    return [result.text for result in zxingcpp.read_barcodes(image)]


def decode_terminal(text: str) -> list[str]:
    return decode_matrix(terminal_qr_matrix(text))


def decode_rgba(width: int, height: int, rgba: Sequence[int]) -> list[str]:
    """What ZXing reads from pixels as a browser's canvas gives them (RGBA rows)."""
    pixels = np.array(rgba, dtype=np.uint8).reshape(height, width, 4)
    # Transparent is what the page shows behind it: white here.
    alpha = pixels[:, :, 3:4].astype(np.uint16)
    grey = (pixels[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha)) // 255
    image = grey.mean(axis=2).astype(np.uint8)
    return [result.text for result in zxingcpp.read_barcodes(image)]

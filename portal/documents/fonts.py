"""The invoice's fonts: parsed once per process, subset for each document in microseconds.

fpdf2 parses a TTF file for every document (``add_font``, ~15 ms for the two styles) and
subsets it with fontTools when the PDF is written (~20 ms). Here each style is cut down
once per process to the characters an invoice of the portal normally prints (Latin with
the Polish, Czech, German and other European letters, digits, punctuation, currency
signs: :data:`PORTAL_CHARACTERS`), parsed once, and copied into each document. When the
PDF is written, the font program embedded is that cut-down font with every glyph the
document does not use emptied (glyph ids are kept, so no renumbering and no fontTools
work): a few kB of byte slicing instead of a subsetting pass.

A document with a character beyond that set (a Greek or Cyrillic company name, say) is
rendered the ordinary way, with the full font: :func:`portal.documents.pdf.render_pdf`
checks after the layout and starts again. Both ways give the same text, widths and
positions (the glyphs and their metrics are the font's own).
"""

from __future__ import annotations

import copy
import io
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fontTools import subset as ftsubset
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.fonts import SubsetMap, TTFFont
from fpdf.output import (
    CIDSystemInfo,
    OutputProducer,
    PDFFont,
    PDFFontStream,
    _build_cmap_blocks,
    _tt_font_widths,
)
from fpdf.syntax import Name, PDFArray, PDFContentStream


def _ranges(*spans: tuple[int, int]) -> frozenset[int]:
    return frozenset(c for start, end in spans for c in range(start, end + 1))


#: What invoices print in practice: ASCII, Latin-1, Latin Extended-A and -B (Polish,
#: Czech, Slovak, German, Hungarian, Romanian, Baltic...), Latin Extended Additional,
#: general punctuation (dashes, quotes, spaces Babel uses), currency signs, a few symbols.
PORTAL_CHARACTERS = _ranges(
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2100, 0x2122),
    (0x2190, 0x2193),
    (0x2212, 0x2212),
)

# The tables fpdf2 drops when it subsets (fpdf/output.py), dropped here too.
_DROPPED_TABLES = [
    "FFTM",
    "GDEF",
    "GPOS",
    "GSUB",
    "MATH",
    "hdmx",
    "meta",
    "sbix",
    "CBDT",
    "CBLC",
    "EBDT",
    "EBLC",
    "EBSC",
    "SVG ",
    "CPAL",
    "COLR",
]


def presubset(path: Path, characters: Iterable[int]) -> bytes:
    """The font at ``path`` with only the glyphs of ``characters`` (and what they need),
    as fpdf2 would subset it (hinting kept, layout tables dropped), glyph names left out."""
    options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True)
    options.drop_tables += _DROPPED_TABLES
    options.glyph_names = False
    with TTFont(str(path), recalcTimestamp=False, lazy=True) as font:
        subsetter = ftsubset.Subsetter(options)
        subsetter.populate(unicodes=sorted(set(characters) & set(font.getBestCmap())))
        subsetter.subset(font)
        out = io.BytesIO()
        font.save(out)
    return out.getvalue()


def _checksum(data: bytes) -> int:
    if len(data) % 4:
        data += b"\0" * (4 - len(data) % 4)
    words: tuple[int, ...] = struct.unpack(f">{len(data) // 4}I", data)
    return sum(words) & 0xFFFFFFFF


@dataclass(frozen=True)
class FontProgram:
    """A TrueType font split up so that a subset keeping the glyph ids is byte slicing."""

    tables: dict[str, bytes]  # every table but glyf and loca; head's checksum zeroed
    glyphs: tuple[bytes, ...]  # each glyph's glyf data (with its padding), by glyph id
    needs: tuple[frozenset[int], ...]  # the glyph ids a glyph draws with (composites)
    long_loca: bool

    @classmethod
    def from_bytes(cls, data: bytes) -> FontProgram:
        with TTFont(io.BytesIO(data), recalcTimestamp=False) as font:
            order = font.getGlyphOrder()
            gid = {name: n for n, name in enumerate(order)}
            glyf = font["glyf"]
            direct = []
            for name in order:
                glyph = glyf[name]
                parts = glyph.getComponentNames(glyf) if glyph.isComposite() else []
                direct.append({gid[part] for part in parts})
            tags = [tag for tag in font.reader.keys() if tag not in ("glyf", "loca")]
            tables = {tag: bytes(font.reader[tag]) for tag in tags}
            raw_glyf = bytes(font.reader["glyf"])
            raw_loca = bytes(font.reader["loca"])
            long_loca = font["head"].indexToLocFormat == 1
        if long_loca:
            offsets = struct.unpack(f">{len(raw_loca) // 4}I", raw_loca)
        else:
            offsets = tuple(2 * o for o in struct.unpack(f">{len(raw_loca) // 2}H", raw_loca))
        glyphs = tuple(raw_glyf[offsets[n] : offsets[n + 1]] for n in range(len(order)))
        head = bytearray(tables["head"])
        head[8:12] = b"\0\0\0\0"  # checkSumAdjustment, set again for each subset
        tables["head"] = bytes(head)

        def closure(n: int) -> frozenset[int]:
            seen, todo = {n}, [n]
            while todo:
                for part in direct[todo.pop()]:
                    if part not in seen:
                        seen.add(part)
                        todo.append(part)
            return frozenset(seen)

        needs = tuple(closure(n) for n in range(len(order)))
        return cls(tables=tables, glyphs=glyphs, needs=needs, long_loca=long_loca)

    def subset(self, glyph_ids: Iterable[int]) -> bytes:
        """The font with only ``glyph_ids`` (and .notdef) drawn; other glyphs are empty."""
        keep: set[int] = {0}
        for n in glyph_ids:
            keep |= self.needs[n]
        parts, offsets, at = [], [0], 0
        for n, data in enumerate(self.glyphs):
            if n in keep:
                parts.append(data)
                at += len(data)
            offsets.append(at)
        glyf = b"".join(parts)
        if self.long_loca:
            loca = struct.pack(f">{len(offsets)}I", *offsets)
        else:
            loca = struct.pack(f">{len(offsets)}H", *(o // 2 for o in offsets))
        tables = {**self.tables, "glyf": glyf, "loca": loca}
        return _sfnt(tables)


def _sfnt(tables: dict[str, bytes]) -> bytes:
    """A TrueType file of ``tables`` (tags sorted, 4-byte aligned, checksums set)."""
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, count, power * 16, power.bit_length() - 1,
                         count * 16 - power * 16)  # fmt: skip
    offset = 12 + 16 * count
    records, body = [], []
    for tag in tags:
        data = tables[tag]
        records.append(struct.pack(">4sIII", tag.encode("latin-1"), _checksum(data), offset,
                                   len(data)))  # fmt: skip
        padded = data + b"\0" * (-len(data) % 4)
        body.append(padded)
        offset += len(padded)
    font = bytearray(header + b"".join(records) + b"".join(body))
    head_at = 12 + 16 * count + sum(len(b) for b in body[: tags.index("head")])
    adjustment = (0xB1B0AFBA - _checksum(bytes(font))) & 0xFFFFFFFF
    font[head_at + 8 : head_at + 12] = struct.pack(">I", adjustment)
    return bytes(font)


# -- fpdf2 integration ----------------------------------------------------------------------


class CachedFont(TTFFont):
    """A document's copy of a font parsed once (see :func:`document_font`)."""

    __slots__ = ("program", "widths")
    program: FontProgram
    widths: dict[str, float]  # text -> its width in font units, for this document

    def get_text_width(
        self, text: str, font_size_pt: float, text_shaping_params: dict[str, Any] | None
    ) -> tuple[int, float]:
        """As fpdf2's, with the sum of the character widths remembered: its line breaking
        asks for the width of a line after each character it adds (quadratic in the line's
        length), so the width of ``text`` is that of ``text[:-1]`` plus one character."""
        if text_shaping_params or self.is_symbol:
            return super().get_text_width(text, font_size_pt, text_shaping_params)
        if font_size_pt > self.biggest_size_pt:
            self.biggest_size_pt = font_size_pt
        widths = self.widths
        units = widths.get(text)
        if units is None:
            head = text[:-1]
            known = widths.get(head)
            before = sum(self.cw[ord(c)] for c in head) if known is None else known
            units = before + self.cw[ord(text[-1])] if text else 0.0
            widths[text] = units
        return len(text), units * font_size_pt * 0.001


@dataclass(frozen=True)
class FontStyle:
    template: TTFFont
    program: FontProgram


_lock = threading.Lock()


@cache
def _style(path: Path, fontkey: str, style: str) -> FontStyle:
    data = presubset(path, PORTAL_CHARACTERS)
    with _lock:
        template = TTFFont(FPDF(), io.BytesIO(data), fontkey, style)  # type: ignore[arg-type]
    template.ttfont.close()  # everything fpdf2 needs is read; the bytes live in the program
    return FontStyle(template=template, program=FontProgram.from_bytes(data))


def document_font(pdf: FPDF, path: Path, family: str, style: str) -> None:
    """``pdf.add_font(family, style, path)`` from the per-process copy of the font."""
    fontkey = f"{family.lower()}{style}"
    parsed = _style(path, fontkey, style)
    font = CachedFont.__new__(CachedFont)
    for name in TTFFont.__slots__:
        if hasattr(parsed.template, name):
            setattr(font, name, getattr(parsed.template, name))
    font.i = len(pdf.fonts) + 1
    font.missing_glyphs = []
    font.biggest_size_pt = 0
    font.desc = copy.copy(parsed.template.desc)  # gets the document's object id
    font._hbfont = None
    font.program = parsed.program
    font.widths = {}
    font.subset = SubsetMap(font)
    pdf.fonts[fontkey] = font


def missing_characters(pdf: FPDF) -> bool:
    """Whether the layout asked a cut-down font for a character it lacks."""
    return any(isinstance(f, CachedFont) and f.missing_glyphs for f in pdf.fonts.values())


class Producer(OutputProducer):
    """fpdf2's PDF writer, with the font programs of :class:`CachedFont` made here: the
    same PDF objects as fpdf2 writes for a TrueType font (fpdf/output.py, ``_add_fonts``),
    only the embedded program and its glyph map come from :meth:`FontProgram.subset`."""

    def _add_fonts(self, *args: Any, **kwargs: Any) -> Any:
        fonts = self.fpdf.fonts
        cached = {key: f for key, f in fonts.items() if isinstance(f, CachedFont)}
        if not cached:
            return super()._add_fonts(*args, **kwargs)
        if len(cached) != len(fonts):
            raise ValueError("a document mixes cached and ordinary fonts")
        objects: dict[int, Any] = {}
        for font in sorted(cached.values(), key=lambda f: f.i):
            objects[font.i] = self._add_cached_font(font)
        return objects

    def _add_cached_font(self, font: CachedFont) -> PDFFont:
        fontname = f"MPDFAA+{font.name}"
        used = [(glyph, code) for glyph, code in font.subset.items() if glyph is not None]
        code_to_glyph = {code: glyph.glyph_id for glyph, code in used}
        program = font.program.subset(code_to_glyph.values())

        composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
        self._add_pdf_obj(composite, "fonts")
        cid_font = PDFFont(
            subtype="CIDFontType2",
            base_font=fontname,
            d_w=font.desc.missing_width,
            w=_tt_font_widths(font),
        )
        self._add_pdf_obj(cid_font, "fonts")
        composite.descendant_fonts = PDFArray([cid_font])

        chars = []
        for glyph, code in used:
            if isinstance(glyph.unicode, tuple) and glyph.unicode:
                target = "".join(_utf16_hex(u) for u in glyph.unicode)
                chars.append(f"<{code:04X}> <{target}>\n")
        to_unicode = PDFContentStream(
            (
                "/CIDInit /ProcSet findresource begin\n"
                "12 dict begin\n"
                "begincmap\n"
                "/CIDSystemInfo\n"
                "<</Registry (Adobe)\n"
                "/Ordering (UCS)\n"
                "/Supplement 0\n"
                ">> def\n"
                "/CMapName /Adobe-Identity-UCS def\n"
                "/CMapType 2 def\n"
                "1 begincodespacerange\n"
                "<0000> <FFFF>\n"
                "endcodespacerange\n"
                f"{_build_cmap_blocks(chars, 'bfchar')}"
                "endcmap\n"
                "CMapName currentdict /CMap defineresource pop\n"
                "end\n"
                "end"
            ).encode("latin-1")
        )
        self._add_pdf_obj(to_unicode, "fonts")
        composite.to_unicode = to_unicode

        system_info = CIDSystemInfo()
        self._add_pdf_obj(system_info, "fonts")
        cid_font.c_i_d_system_info = system_info

        descriptor = font.desc
        descriptor.font_name = Name(fontname)
        self._add_pdf_obj(descriptor, "fonts")
        cid_font.font_descriptor = descriptor

        # CIDToGIDMap: two bytes per code, the glyph id in the embedded program.
        cid_to_gid = bytearray(256 * 256 * 2)
        for code, gid in code_to_glyph.items():
            cid_to_gid[code * 2] = gid >> 8
            cid_to_gid[code * 2 + 1] = gid & 0xFF
        cid_to_gid_obj = PDFContentStream(contents=bytes(cid_to_gid), compress=True)
        self._add_pdf_obj(cid_to_gid_obj, "fonts")
        cid_font.c_i_d_to_g_i_d_map = cid_to_gid_obj

        stream = PDFFontStream(contents=program)
        self._add_pdf_obj(stream, "fonts")
        descriptor.font_file2 = stream  # type: ignore[attr-defined]

        font.subset.pick.cache_clear()
        font.subset.get_glyph.cache_clear()
        return composite


def _utf16_hex(code: int) -> str:
    if code > 0xFFFF:
        high = 0xD800 | (code - 0x10000) >> 10
        low = 0xDC00 | (code & 0x3FF)
        return f"{high:04X}{low:04X}"
    return f"{code:04X}"

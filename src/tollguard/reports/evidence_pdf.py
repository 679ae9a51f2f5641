"""A small, dependency-free PDF writer for the case file: text pages (Helvetica and
Courier, WinAnsi), A4 landscape, automatic page breaks and page numbers.

WeasyPrint needs system libraries (Pango) that a plain ``pip install`` does not bring,
so the evidence PDF is written directly: a case file is text and tables, and a PDF 1.4
text page is simple enough to produce exactly (and byte-for-byte reproducibly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_W, PAGE_H = 842, 595  # A4 landscape, points
MARGIN = 36
FONTS = {"body": ("F1", "Helvetica"), "bold": ("F2", "Helvetica-Bold"), "mono": ("F3", "Courier")}


def _escape(text: str) -> str:
    raw = text.encode("cp1252", "replace").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


@dataclass
class PdfDocument:
    title: str = "tollguard case file"
    pages: list[list[str]] = field(default_factory=list)
    _y: float = 0.0

    def _new_page(self) -> None:
        self.pages.append([])
        self._y = PAGE_H - MARGIN

    def line(self, text: str = "", *, font: str = "body", size: float = 9.0) -> None:
        lead = size * 1.35
        if not self.pages or self._y - lead < MARGIN + 14:
            self._new_page()
        self._y -= lead
        name = FONTS[font][0]
        self.pages[-1].append(
            f"BT /{name} {size:g} Tf {MARGIN} {self._y:.2f} Td ({_escape(text)}) Tj ET"
        )

    def heading(self, text: str) -> None:
        self.space(4)
        self.line(text, font="bold", size=12)
        self.space(2)

    def space(self, points: float) -> None:
        if self.pages:
            self._y -= points

    def page_break(self) -> None:
        self._new_page()

    def render(self) -> bytes:
        if not self.pages:
            self._new_page()
        objects: list[bytes] = []

        def add(body: bytes) -> int:
            objects.append(body)
            return len(objects)

        catalog = add(b"")  # filled in below
        pages_id = add(b"")
        font_ids = {
            key: add(
                f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} "
                f"/Encoding /WinAnsiEncoding >>".encode()
            )
            for key, (_, base) in FONTS.items()
        }
        resources = " ".join(f"/{FONTS[k][0]} {i} 0 R" for k, i in font_ids.items())
        page_ids: list[int] = []
        total = len(self.pages)
        for number, ops in enumerate(self.pages, start=1):
            footer = (
                f"BT /F1 7 Tf {MARGIN} 20 Td ({_escape(self.title)} - page {number} of {total})"
                " Tj ET"
            )
            stream = "\n".join([*ops, footer]).encode("latin-1")
            content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
            page_ids.append(
                add(
                    f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
                    f"/Resources << /Font << {resources} >> >> /Contents {content} 0 R >>".encode()
                )
            )
        kids = " ".join(f"{i} 0 R" for i in page_ids)
        objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
        objects[pages_id - 1] = f"<< /Type /Pages /Kids [{kids}] /Count {total} >>".encode()
        info = add(f"<< /Title ({_escape(self.title)}) /Producer (tollguard) >>".encode())

        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets: list[int] = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        for offset in offsets:
            out += b"%010d 00000 n \n" % offset
        out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(objects) + 1,
            catalog,
            info,
            xref,
        )
        return bytes(out)

"""PDFs in image inputs: a document is opened and checked against the limits before anything is rendered,
then rendered one page at a time, each page embedded as an image.

The renderer is PDFium (Chrome's PDF engine) through pypdfium2: maintained, fast, a self-contained wheel
with no system libraries (poppler's pdf2image needs Debian's poppler-utils and a subprocess per page), and
it reads page sizes without rendering. PDFium is not thread-safe, not even across documents, so every call
into it holds one process-wide lock; rendering runs off the event loop (the engine's image preparation).

What an untrusted PDF cannot do: be larger than MAX_IMAGE_BYTES (checked where its bytes arrive, as an
image's), have more than MAX_PDF_PAGES pages, or have a page whose rendering at PDF_DPI would hold more than
MAX_PDF_PAGE_PIXELS pixels (both read from the document's structure, before any page is rendered);
encrypted (a user password) and malformed files are 400s. A rendering holds one page's pixels at a time.
"""

from __future__ import annotations

import math
import threading

from PIL import Image

from ..errors import InvalidRequest, PayloadTooLarge
from .signatures import image_format

_PDFIUM = threading.Lock()
# A PDF's header may follow up to 1024 bytes of anything (ISO 32000-1, 7.5.2); readers look that far.
HEADER_WINDOW = 1024


def is_pdf(data: bytes) -> bool:
    if data.startswith(b"%PDF-"):
        return True
    # A picture whose metadata (a PNG text chunk, a JPEG comment) quotes "%PDF-" in its first kilobyte is still
    # that picture; so is anything in an ISO-BMFF box (HEIF, AVIF, MP4).
    if image_format(data) is not None or data[4:8] == b"ftyp":
        return False
    return b"%PDF-" in data[:HEADER_WINDOW]


class PdfPages:
    """A PDF's pages, checked when opened, rendered one at a time by `render`."""

    def __init__(self, data: bytes, *, max_pages: int, dpi: int, max_page_pixels: int, param: str):
        import pypdfium2 as pdfium  # imported where a PDF arrives: most servers never see one

        self.param = param
        self.scale = dpi / 72  # PDF sizes are in points, 72 to the inch
        if max_pages == 0:
            raise InvalidRequest(f"{param} is a PDF, and this server takes none (MAX_PDF_PAGES=0)", param=param)
        with _PDFIUM:
            try:
                self.document = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as exc:
                if "password" in str(exc).lower():
                    raise InvalidRequest(
                        f"{param} is an encrypted PDF (it needs a password to open)", param=param, code="pdf_encrypted"
                    ) from None
                raise InvalidRequest(f"{param} is not a readable PDF: {exc}", param=param, code="invalid_pdf") from None
            try:
                self.count = len(self.document)
                if self.count == 0:
                    raise InvalidRequest(f"{param} is a PDF with no pages", param=param, code="invalid_pdf")
                if self.count > max_pages:
                    raise PayloadTooLarge(
                        f"{param} is a PDF of {self.count} pages; at most {max_pages} are embedded per document "
                        "(MAX_PDF_PAGES)",
                        param=param,
                        code="too_many_pages",
                    )
                for index in range(self.count):
                    width, height = self.document.get_page_size(index)
                    pixels = math.ceil(width * self.scale) * math.ceil(height * self.scale)
                    if not 0 < pixels <= max_page_pixels:
                        raise PayloadTooLarge(
                            f"{param} page {index + 1} is {width:.0f} x {height:.0f} points: {pixels} pixels at "
                            f"PDF_DPI={dpi}, over the limit of {max_page_pixels} (MAX_PDF_PAGE_PIXELS)",
                            param=param,
                            code="page_too_large",
                        )
            except Exception:
                self.document.close()
                raise

    def __len__(self) -> int:
        return self.count

    def render(self, index: int) -> Image.Image:
        """Page `index` (from 0) as an RGB picture on white, as a viewer shows it."""
        with _PDFIUM:
            page = self.document[index]
            try:
                bitmap = page.render(scale=self.scale, may_draw_forms=True)
                image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is PDFium's
                bitmap.close()
            finally:
                page.close()
        return image

    def close(self) -> None:
        with _PDFIUM:
            self.document.close()

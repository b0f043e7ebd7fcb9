"""PDFs in /embed_image (#27): a real multi-page PDF made here with fpdf2 (pages of text and shapes) goes in as a
data URI, raw base64, a multipart upload and an allow-listed URL, and gives one vector per page equal to
embedding that page's rendering as an image, with the page numbers in the answer; hostile PDFs (a page of
100,000 x 100,000 points, 10,000 pages, a truncated file, an encrypted one) are 4xx before anything is
rendered, and over a real gunicorn a bystander keeps being answered while they arrive."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image, PngImagePlugin

from app import create_app
from app.config import Settings
from app.errors import InvalidRequest, PayloadTooLarge
from app.media.images import ImageLimits
from app.media.pdf import PdfPages, is_pdf

from .bystanders import answered_throughout
from .file_server import serving
from .gunicorn_process import GunicornProcess
from .tiny_models import tiny_vision_model

DPI = 72  # small renderings keep the tests fast; the default is Settings.pdf_dpi


def make_pdf(pages: int = 3, *, password: str | None = None) -> bytes:
    """A PDF of `pages` pages, each with its number in large type and a different filled shape."""
    import fpdf

    document = fpdf.FPDF(unit="pt", format=(300, 400))
    if password:
        document.set_encryption(owner_password="owner", user_password=password)
    document.set_font("helvetica", size=36)
    for number in range(1, pages + 1):
        document.add_page()
        document.cell(text=f"Page {number}")
        document.set_fill_color(40 * number % 255, 90, 200)
        if number % 2:
            document.rect(40, 120, 60 + 40 * number, 150, style="F")
        else:
            document.ellipse(60, 100, 180, 120 + 20 * number, style="F")
    return bytes(document.output())


def blank_pdf(pages: int, width: float = 612, height: float = 792) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(width, height)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def png_of(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def renderings(data: bytes) -> list[bytes]:
    """Each page as the service renders it, as PNG files: what embedding the page's rendering means."""
    pages = PdfPages(data, max_pages=100, dpi=DPI, max_page_pixels=10**8, param="x")
    try:
        return [png_of(pages.render(index)) for index in range(len(pages))]
    finally:
        pages.close()


PDF = make_pdf()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_vision_model(tmp_path_factory.mktemp("pdf") / "clip", "clip")


@pytest.fixture(scope="module")
def client(clip_dir):
    env = {"MODEL_PATH": str(clip_dir), "DTYPE": "float32", "PDF_DPI": str(DPI), "IMAGE_URL_FETCH": "true"}
    return create_app(Settings.from_env({**env, "ALLOWED_IMAGE_NETWORKS": "127.0.0.1"})).test_client()


@pytest.fixture(scope="module")
def pages_embedded(client):
    """The pages' renderings embedded as images: what every PDF path must answer."""
    images = [base64.b64encode(png).decode() for png in renderings(PDF)]
    answer = client.post("/embed_image", json={"images": images})
    assert answer.status_code == 200 and "pages" not in answer.get_json()
    return np.array(answer.get_json()["embeddings"])


@pytest.fixture(scope="module")
def pdf_server():
    with serving({"/paper.pdf": (PDF, "application/pdf")}) as url:
        yield url


def test_the_pages_render_differently():
    pngs = renderings(PDF)
    assert len(pngs) == 3 and len(set(pngs)) == 3 and is_pdf(PDF) and not is_pdf(pngs[0])


def test_an_image_whose_metadata_says_pdf_is_an_image(client):
    """A PDF's header may sit anywhere in its first kilobyte, but a PNG or JPEG carrying "%PDF-" in a text chunk
    or comment there is still one picture: one vector, not a 400 from the PDF reader."""
    picture = Image.new("RGB", (32, 24), (200, 30, 60))
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "%PDF-1.7 quoted in a caption")
    png, jpeg = io.BytesIO(), io.BytesIO()
    picture.save(png, format="PNG", pnginfo=text)
    picture.save(jpeg, format="JPEG", comment=b"%PDF-1.4")
    for data in (png.getvalue(), jpeg.getvalue()):
        assert b"%PDF-" in data[:1024] and not is_pdf(data)
        answer = client.post("/embed_image", json={"images": [base64.b64encode(data).decode()]})
        assert answer.status_code == 200, answer.get_json()
        assert len(answer.get_json()["embeddings"]) == 1 and "pages" not in answer.get_json()
    preceded = b"\n" * 100 + PDF  # a PDF whose header comes after leading bytes, as readers accept
    assert is_pdf(preceded) and PdfPages(preceded, max_pages=8, dpi=72, max_page_pixels=10**8, param="x").count == 3


@pytest.mark.parametrize("path", ["data-uri", "base64", "multipart", "url"])
def test_every_input_path_gives_a_vector_per_page(client, pages_embedded, pdf_server, path):
    encoded = base64.b64encode(PDF).decode()
    if path == "multipart":
        answer = client.post(
            "/embed_image", data={"file": (io.BytesIO(PDF), "paper.pdf")}, content_type="multipart/form-data"
        )
    else:
        source = {
            "data-uri": f"data:application/pdf;base64,{encoded}",
            "base64": encoded,
            "url": f"{pdf_server}/paper.pdf",
        }[path]
        answer = client.post("/embed_image", json={"images": [source]})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["pages"] == [{"input": 0, "page": page} for page in (1, 2, 3)]
    np.testing.assert_allclose(np.array(body["embeddings"]), pages_embedded, atol=1e-6)


def test_images_and_pdfs_mixed_keep_their_order(client, pages_embedded):
    png = base64.b64encode(renderings(PDF)[1]).decode()
    answer = client.post("/embed_image", json={"images": [png, base64.b64encode(PDF).decode(), png]})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["pages"] == [
        {"input": 0, "page": None},
        *({"input": 1, "page": page} for page in (1, 2, 3)),
        {"input": 2, "page": None},
    ]
    vectors = np.array(body["embeddings"])
    np.testing.assert_allclose(vectors[1:4], pages_embedded, atol=1e-6)
    np.testing.assert_allclose(vectors[0], pages_embedded[1], atol=1e-6)


HOSTILE = {
    "huge page": (blank_pdf(1, 100_000, 100_000), 413, "page_too_large"),
    "10,000 pages": (blank_pdf(10_000), 413, "too_many_pages"),
    "truncated": (PDF[: len(PDF) // 2], 400, "invalid_pdf"),
    "encrypted": (make_pdf(1, password="secret"), 400, "pdf_encrypted"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdfs_are_refused_before_rendering(client, name):
    data, status, code = HOSTILE[name]
    answer = client.post("/embed_image", json={"images": [base64.b64encode(data).decode()]})
    assert answer.status_code == status, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == code and error["param"] == "images[0]"


def test_limits_are_checked_from_the_structure_alone(monkeypatch):
    """The caps are read before any page renders: rendering is never reached for a refused document."""
    rendered = []
    monkeypatch.setattr(PdfPages, "render", lambda self, index: rendered.append(index))
    limits = ImageLimits(max_pdf_pages=5, pdf_dpi=144, max_pdf_page_pixels=2_000_000)
    with pytest.raises(PayloadTooLarge, match="6 pages.*MAX_PDF_PAGES"):
        limits.pages(blank_pdf(6), "images[0]")
    with pytest.raises(PayloadTooLarge, match=r"page 1 is 612 x 792 points: \d+ pixels at PDF_DPI=144"):
        ImageLimits(max_pdf_pages=5, pdf_dpi=144, max_pdf_page_pixels=1_000_000).pages(blank_pdf(1), "x")
    assert len(limits.pages(blank_pdf(2), "x")) == 2 and rendered == []
    with pytest.raises(InvalidRequest, match="MAX_PDF_PAGES=0"):
        ImageLimits(max_pdf_pages=0).pages(PDF, "x")


def test_routes_that_answer_a_vector_per_input_refuse_pdfs(client):
    encoded = base64.b64encode(PDF).decode()
    answer = client.post("/v1/embeddings", json={"input": [encoded], "modality": "image"})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "pdf_not_accepted"
    assert "/embed_image" in answer.get_json()["error"]["message"]


@pytest.mark.slow
def test_hostile_pdfs_over_gunicorn_leave_a_bystander_answered(clip_dir, tmp_path):
    env = {"MODEL_PATH": str(clip_dir), "DTYPE": "float32", "PDF_DPI": str(DPI)}
    with GunicornProcess(env, workers=2, log_path=tmp_path / "server.log") as server:
        before = server.worker_pids()
        with answered_throughout(server.url):
            for name, (data, status, _) in sorted(HOSTILE.items()):
                for _ in range(3):
                    files = {"file": (f"{name}.pdf", data, "application/pdf")}
                    answer = requests.post(server.url + "/embed_image", files=files, timeout=120)
                    assert answer.status_code == status, (name, answer.text)
            served = requests.post(server.url + "/embed_image", files={"file": ("ok.pdf", PDF)}, timeout=120)
            assert served.status_code == 200 and len(served.json()["embeddings"]) == 3
        assert server.worker_pids() == before

"""The device-side JPEG path (engine.gpu_decode): run here on the CPU through the same code,
so only the nvJPEG call itself is left to the CUDA test at the end (skipped without a GPU)."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine import gpu_decode
from engine.decode import _UNDO_ORIENTATION, read_photo
from engine.embedding import Embedder, preprocess_images
from engine.errors import DecodeError
from engine.library import Library
from imagegen import photo, save_jpeg

MEAN = torch.tensor([127.0, 127.0, 127.0])
STD = torch.tensor([128.0, 128.0, 128.0])


def _exif_jpeg(img: Image.Image, path, orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", quality=92, exif=exif)
    return path


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_undoes_exif_like_pillow(orientation):
    img = photo(3, (40, 24))
    want = img.transpose(_UNDO_ORIENTATION[orientation]) if orientation in _UNDO_ORIENTATION else img
    assert torch.equal(gpu_decode.orient(_tensor(img), orientation), _tensor(want))


def test_decoder_matches_the_cpu_preprocessing(tmp_path):
    files = [save_jpeg(photo(s, (320, 240)), tmp_path / f"{s}.jpg", quality=95) for s in range(3)]
    decoder = gpu_decode.JpegBatchDecoder(64, MEAN, STD, torch.device("cpu"))
    out = decoder([gpu_decode.JpegItem(str(f), f.read_bytes()) for f in files])
    assert out.rows == [0, 1, 2] and not out.errors and out.tensor.shape == (3, 3, 64, 64)
    cpu = preprocess_images([read_photo(f, 64).image for f in files], 64, MEAN.view(1, 3, 1, 1),
                            STD.view(1, 3, 1, 1))
    # Different resamplers (draft-mode DCT scaling + Pillow bilinear vs. antialiased
    # interpolate) agree to a few grey levels on average.
    assert (out.tensor - cpu).abs().mean() < 0.03


def test_exif_orientation_is_applied(tmp_path):
    img = photo(5, (96, 64))
    path = _exif_jpeg(img, tmp_path / "turned.jpg", 6)
    photo_ = read_photo(path, 32, keep_jpeg=True)
    assert photo_.jpeg is not None and photo_.orientation == 6 and (photo_.width, photo_.height) == (64, 96)
    decoder = gpu_decode.JpegBatchDecoder(32, MEAN, STD, torch.device("cpu"))
    out = decoder([gpu_decode.JpegItem(str(path), photo_.jpeg, photo_.orientation)])
    cpu = preprocess_images([read_photo(path, 32).image], 32, MEAN.view(1, 3, 1, 1), STD.view(1, 3, 1, 1))
    assert (out.tensor - cpu).abs().mean() < 0.03


def test_keep_jpeg_leaves_other_formats_and_cmyk_to_pillow(tmp_path):
    png = tmp_path / "a.png"
    photo(1).save(png)
    cmyk = tmp_path / "c.jpg"
    photo(2).convert("CMYK").save(cmyk, "JPEG")
    for path in (png, cmyk):
        p = read_photo(path, 32, keep_jpeg=True)
        assert p.jpeg is None and p.image is not None
    assert read_photo(cmyk, None, keep_jpeg=True).jpeg is None  # no pixels asked: nothing kept


def test_a_refused_jpeg_falls_back_to_pillow_then_names_the_file(tmp_path, monkeypatch):
    good = save_jpeg(photo(1), tmp_path / "good.jpg")
    odd = save_jpeg(photo(2), tmp_path / "odd.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:300])  # header only: Pillow refuses it too
    import torchvision.io

    real = torchvision.io.decode_jpeg
    refused = {len(odd.read_bytes()), 300}

    def picky(data, **kwargs):  # the device decoder refuses two of them
        if isinstance(data, list) or len(data) in refused:
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", picky)
    decoder = gpu_decode.JpegBatchDecoder(32, MEAN, STD, torch.device("cpu"))
    out = decoder([gpu_decode.JpegItem(str(p), p.read_bytes()) for p in (good, odd, broken)])
    assert out.rows == [0, 1] and out.tensor.shape[0] == 2
    assert isinstance(out.errors[2], DecodeError) and "broken.jpg" in str(out.errors[2])


def test_usable_never_reaches_nvjpeg_without_a_driver(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not gpu_decode.usable(torch.device("cuda"))
    assert not gpu_decode.usable(torch.device("cpu"))


def test_embed_photos_mixes_both_paths_in_order(embedder, tmp_path):
    jpegs = [save_jpeg(photo(s), tmp_path / f"{s}.jpg", quality=95) for s in range(3)]
    png = tmp_path / "p.png"
    photo(7).save(png)
    files = [jpegs[0], png, jpegs[1], jpegs[2]]
    device = Embedder(embedder.bundle, device="cpu", gpu_jpeg=True)
    photos = [read_photo(f, device.input_size, keep_jpeg=True) for f in files]
    assert [p.jpeg is not None for p in photos] == [True, False, True, True]
    vectors, errors = device.embed_photos(photos)
    want = embedder.embed_files(files, head="copy")
    assert not errors and vectors["copy"].shape == want.shape
    assert np.all(np.einsum("nd,nd->n", vectors["copy"], want) > 0.99)


def test_scan_through_the_device_path_matches_the_cpu_scan(tmp_path, monkeypatch):
    decoded = []
    real_call = gpu_decode.JpegBatchDecoder.__call__
    monkeypatch.setattr(gpu_decode.JpegBatchDecoder, "__call__",
                        lambda self, items: decoded.extend(items) or real_call(self, items))
    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(4):
        save_jpeg(photo(s), photos / f"{s}.jpg", quality=95)
    save_jpeg(photo(0).resize((200, 150)), photos / "small copy.jpg", quality=80)
    good = (photos / "1.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(good[: len(good) // 3])  # header fine, pixels cut off
    vectors = {}
    for name, gpu in (("cpu", False), ("device", True)):
        with Library(tmp_path / name, device="cpu") as lib:
            lib.embedder.gpu_jpeg = gpu
            report = lib.scan([photos])
            vectors[name] = dict(zip(*lib.catalog.embeddings(lib.model_id, "copy")))
            groups = lib.duplicates("near")
            problems = {p.path for p in lib.catalog.problems()}
        assert any({"0.jpg", "small copy.jpg"} <= {m.file.path.split("/")[-1] for m in g.members} for g in groups)
        assert any(p.endswith("cut.jpg") for p in problems), (name, problems, report)
    assert len(decoded) == 6  # every JPEG went through the device decoder in the second scan
    assert vectors["cpu"].keys() == vectors["device"].keys()
    for digest, v in vectors["cpu"].items():
        assert float(v @ vectors["device"][digest]) > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_nvjpeg_matches_the_cpu_decoder(tmp_path):
    files = [save_jpeg(photo(s, (640, 480)), tmp_path / f"{s}.jpg", quality=95) for s in range(4)]
    items = [gpu_decode.JpegItem(str(f), f.read_bytes()) for f in files]
    cpu = gpu_decode.JpegBatchDecoder(224, MEAN, STD, torch.device("cpu"))(items)
    cuda = gpu_decode.JpegBatchDecoder(224, MEAN, STD, torch.device("cuda"))(items)
    assert cuda.rows == cpu.rows == [0, 1, 2, 3]
    assert (cuda.tensor.cpu() - cpu.tensor).abs().mean() < 0.02

"""jaxloss.train.data (CIFAR-10 readers, checksums, safe unpickling, download, digits) and train.augment."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import socket
import struct
import urllib.error

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests._fake_cifar import fake_cifar_archive, write_fake_cifar
from jaxloss.train import data
from jaxloss.train.data import (
    CIFAR10_PY,
    ChecksumError,
    DatasetError,
    DownloadError,
    UnsafePickleError,
    load_cifar10,
    load_digits32,
    safe_pickle_load,
)


def _pattern_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Images whose pixel (h, w, c) encodes its position, plus the label: checks the CHW->HWC mapping."""
    h, w, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    base = (h * 7 + w * 3 + c * 50) % 256
    return np.stack([(base + int(y)) % 256 for y in labels]).astype(np.uint8)


# --------------------------------------------------------------------------- python layout
def test_py_layout_loads_with_its_checksums(tmp_path):
    sums = write_fake_cifar(tmp_path, 12, image_fn=_pattern_images)
    assert set(sums) == set(CIFAR10_PY.md5)  # the same file names as the official md5 table
    ds = load_cifar10(tmp_path, checksums=sums)
    assert ds.x_train.shape == (60, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (12, 32, 32, 3)
    assert ds.y_train.dtype == np.int32 and ds.y_train.tolist()[:13] == [*range(10), 0, 1, 1]
    expected = _pattern_images(np.random.default_rng(0), ds.y_train)
    np.testing.assert_array_equal(ds.x_train, expected)  # NHWC, pixel for pixel
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck" and ds.hflip
    # the folder itself may be given as root
    ds2 = load_cifar10(tmp_path / CIFAR10_PY.folder, checksums=sums)
    np.testing.assert_array_equal(ds2.x_test, ds.x_test)


def test_official_checksums_reject_other_files(tmp_path):
    write_fake_cifar(tmp_path, 4)
    with pytest.raises(
        ChecksumError,
        match=r"data_batch_1: md5 [0-9a-f]{32} differs from the expected "
        r"c99cafc152244af753f735de768cd75f",
    ):
        load_cifar10(tmp_path)


def test_truncated_py_batch(tmp_path):
    sums = write_fake_cifar(tmp_path, 8)
    path = tmp_path / CIFAR10_PY.folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ChecksumError, match="data_batch_3"):
        load_cifar10(tmp_path, checksums=sums)
    with pytest.raises(DatasetError, match="data_batch_3: truncated or malformed pickle"):
        load_cifar10(tmp_path, checksums=False)


def test_wrong_shape_or_labels_are_clear_errors(tmp_path):
    write_fake_cifar(tmp_path, 4)
    folder = tmp_path / CIFAR10_PY.folder
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, 2)
    )
    with pytest.raises(DatasetError, match=r"b'data' must be a uint8 array of shape \(N, 3072\)"):
        load_cifar10(tmp_path, checksums=False)
    (folder / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, 2)
    )
    with pytest.raises(DatasetError, match=r"labels outside 0..9"):
        load_cifar10(tmp_path, checksums=False)


class _Payload:
    """Pickles as a call of os.system: loading it with plain pickle would run the command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    write_fake_cifar(tmp_path, 4)
    path = tmp_path / CIFAR10_PY.folder / "data_batch_1"
    payload = pickle.dumps({b"data": _Payload(str(marker)), b"labels": [0]}, protocol=2)
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|os|nt)\.system"):
        load_cifar10(tmp_path, checksums=False)
    with pytest.raises(pickle.UnpicklingError):  # also an UnpicklingError, for callers that catch that
        safe_pickle_load(path)
    assert not marker.exists()
    # sanity: the same bytes through plain pickle would have run the command
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize(
    "obj",
    [
        np.array([1, "x"], dtype=object),  # object array: its elements could be anything
        {b"data": __import__("collections").OrderedDict()},  # any other class, however harmless
    ],
)
def test_restricted_unpickler_allows_only_plain_data(tmp_path, obj):
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UnsafePickleError):
        safe_pickle_load(path)


def test_restricted_unpickler_reads_arrays_from_any_protocol(tmp_path):
    arr = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    for proto in (2, 4):
        path = tmp_path / f"p{proto}.pkl"
        path.write_bytes(
            pickle.dumps({b"data": arr, b"labels": [1, 2], "s": "x", 3: (1.5, None)}, protocol=proto)
        )
        out = safe_pickle_load(path)
        np.testing.assert_array_equal(out[b"data"], arr)
        assert out[b"labels"] == [1, 2] and out[3] == (1.5, None)


class _Py2Pickler(pickle._Pickler):
    """Writes what the dataset authors' Python 2 ``cPickle.dump(d, f, 2)`` wrote.

    Python 2 ``str`` (the dict keys, ``batch_label``, the file names, the dtype code and the
    array's raw pixel bytes) is a SHORT_BINSTRING / BINSTRING, and numpy's reconstructor is
    the global ``numpy.core.multiarray._reconstruct``. Python 3's pickler writes neither
    (bytes become ``_codecs.encode`` calls; numpy 2 names ``numpy._core``), so this is the
    only way to produce the official files' byte layout offline.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj):  # type: ignore[no-untyped-def]
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):  # type: ignore[no-untyped-def]
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(np.add.reduce)] = save_global  # builtin functions (numpy's _reconstruct)


def test_python2_written_batch_loads(tmp_path):
    """A batch in the official files' exact opcodes (Python 2 strings, numpy.core path) loads."""
    write_fake_cifar(tmp_path, 4)
    labels = [3, 7, 0, 9, 1]
    images = _pattern_images(np.random.default_rng(0), np.asarray(labels))
    flat = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(5, 3072))
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": labels,
        "data": flat,
        "filenames": [f"img_{i}.png" for i in range(5)],
    }
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(batch)
    raw = buf.getvalue()
    assert (
        raw.startswith(b"\x80\x02}q\x00(U\x0bbatch_label") and b"cnumpy.core.multiarray\n_reconstruct" in raw
    )
    assert b"_codecs" not in raw  # no Python 3 bytes encoding: this is the Python 2 layout
    (tmp_path / CIFAR10_PY.folder / "data_batch_1").write_bytes(raw)
    ds = load_cifar10(tmp_path, checksums=False)
    assert ds.y_train[:5].tolist() == labels
    np.testing.assert_array_equal(ds.x_train[:5], images)  # CHW bytes -> NHWC, pixel for pixel


# --------------------------------------------------------------------------- binary layout
def test_bin_layout_matches_py_layout(tmp_path):
    write_fake_cifar(tmp_path / "py", 6, image_fn=_pattern_images)
    write_fake_cifar(tmp_path / "bin", 6, fmt="bin", image_fn=_pattern_images)
    a = load_cifar10(tmp_path / "py", checksums=False)
    b = load_cifar10(tmp_path / "bin", fmt="bin")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert b.classes == a.classes
    # auto-detection finds the binary layout when it is the only one
    np.testing.assert_array_equal(load_cifar10(tmp_path / "bin").x_test, a.x_test)


def test_bin_truncated_record(tmp_path):
    write_fake_cifar(tmp_path, 3, fmt="bin")
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        load_cifar10(tmp_path, fmt="bin")


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="--download"):
        load_cifar10(tmp_path)


# ------------------------------------------------------------------------ download (urlopen faked: no network)
class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):  # type: ignore[no-untyped-def]
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(
        DownloadError, match=r"could not download https://www\.cs\.toronto\.edu/.*offline.*--dataset digits"
    ):
        load_cifar10(tmp_path / "d", download=True, progress=False)
    assert list((tmp_path / "d").iterdir()) == []  # no partial file left behind


def test_download_from_an_unreachable_address_is_a_clear_error(tmp_path):
    """The real urlopen against a closed local port (no outside network is touched)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now, closed once the socket is: connection refused
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    root = tmp_path / "d"
    with pytest.raises(DownloadError, match=rf"could not download {url}: .*offline.*--dataset digits"):
        data.download_cifar10(root, url=url, progress=False, timeout=5)
    assert list(root.iterdir()) == []  # no partial archive, no temp file


def test_download_broken_off_midway_keeps_nothing(tmp_path, monkeypatch):
    class _Broken(_FakeResponse):
        def read(self, n=-1):  # type: ignore[no-untyped-def]
            if self.tell() > 0:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(100)

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: _Broken(b"x" * 1000))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="broke off: .*Connection reset by peer"):
        data.download_cifar10(root, progress=False)
    assert list(root.iterdir()) == []


def test_download_verifies_extracts_and_renames(tmp_path, monkeypatch, capsys):
    archive = fake_cifar_archive(tmp_path / "src", 5)
    sums = write_fake_cifar(tmp_path / "src", 5)  # the same files (deterministic) -> their md5s
    calls = []

    def serve(url, timeout=None):  # type: ignore[no-untyped-def]
        calls.append(url)
        return _FakeResponse(archive)

    monkeypatch.setattr(data.urllib.request, "urlopen", serve)
    root = tmp_path / "root"
    md5 = hashlib.md5(archive).hexdigest()
    folder = data.download_cifar10(root, md5=md5, file_md5=sums, progress=True)
    assert folder == root / CIFAR10_PY.folder
    assert calls == [CIFAR10_PY.url]
    assert "downloading cifar-10-python.tar.gz ━" in capsys.readouterr().err  # progress bar
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [CIFAR10_PY.archive, CIFAR10_PY.folder]
    )  # no temp left
    ds = load_cifar10(root, checksums=sums)
    assert ds.x_train.shape == (25, 32, 32, 3)
    # a second call finds the verified archive and does not download again
    data.download_cifar10(root, md5=md5, file_md5=sums, progress=False)
    assert len(calls) == 1


def test_download_with_wrong_md5_keeps_nothing(tmp_path, monkeypatch):
    archive = fake_cifar_archive(tmp_path / "src", 2)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout=None: _FakeResponse(archive))
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match="differs from the official c58f30108f718f92721af3b95e74349a"):
        data.download_cifar10(root, progress=False)
    assert list(root.iterdir()) == []


# --------------------------------------------------------------------------- digits
def test_digits_offline_deterministic():
    a, b = load_digits32(), load_digits32()
    assert a.x_train.shape == (1438, 32, 32, 3) and a.x_test.shape == (359, 32, 32, 3)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int32
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert np.bincount(a.y_test, minlength=10).min() >= 35  # stratified
    assert not a.hflip and a.num_classes == 10
    assert a.x_train[:, :4].max() == 0 and a.x_train[:, 28:].max() == 0  # 24x24 digit, 4-pixel border
    assert np.array_equal(a.x_train[..., 0], a.x_train[..., 2])  # grey in 3 channels


# --------------------------------------------------------------------------- augmentation
jax = pytest.importorskip("jax")
import jax.numpy as jnp

from jaxloss.train.augment import augment_batch, augment_image, normalize


def _images(n: int = 16) -> jax.Array:
    rng = np.random.default_rng(1)
    return jnp.asarray(
        rng.integers(1, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    )  # no zeros: padding is visible


def _denorm(x: jax.Array) -> np.ndarray:
    mean, std = np.asarray(data.CIFAR10_MEAN), np.asarray(data.CIFAR10_STD)
    return np.rint((np.asarray(x, np.float64) * std + mean) * 255).astype(np.int64)


def test_augment_shapes_dtype_and_determinism():
    imgs = _images()
    key = jax.random.key(0)
    a = augment_batch(key, imgs)
    assert a.shape == (16, 32, 32, 3) and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(augment_batch(key, imgs)))
    assert not np.array_equal(np.asarray(a), np.asarray(augment_batch(jax.random.key(1), imgs)))
    # vmapped batch == the images one at a time with the split keys
    keys = jax.random.split(key, 16)
    single = jax.jit(augment_image)
    one = jnp.stack([single(keys[i], imgs[i]) for i in range(16)])
    np.testing.assert_allclose(np.asarray(a), np.asarray(normalize(one)), rtol=0, atol=1e-6)


def test_random_crop_is_a_padded_window():
    imgs = np.asarray(_images(32)).astype(np.int64)
    out = _denorm(augment_batch(jax.random.key(3), jnp.asarray(imgs, jnp.uint8), flip=False))
    offsets = set()
    for img, o in zip(imgs, out):
        padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
        hits = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal(padded[dy : dy + 32, dx : dx + 32], o)
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets vary across the batch


def test_random_flip_mirrors_about_half():
    imgs = np.asarray(_images(64)).astype(np.int64)
    out = _denorm(augment_batch(jax.random.key(4), jnp.asarray(imgs, jnp.uint8), padding=0, flip=True))
    flipped = [bool(np.array_equal(o, i[:, ::-1])) for i, o in zip(imgs, out)]
    same = [bool(np.array_equal(o, i)) for i, o in zip(imgs, out)]
    assert all(f != s for f, s in zip(flipped, same))
    assert 16 <= sum(flipped) <= 48


def test_normalize_matches_torchvision_formula():
    imgs = _images(2)
    got = np.asarray(normalize(imgs))
    want = (np.asarray(imgs) / 255.0 - np.asarray(data.CIFAR10_MEAN)) / np.asarray(data.CIFAR10_STD)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- findings of a hostile probe
def test_a_self_referential_pickle_loads_without_hanging(tmp_path):
    """``l = []; l.append(l)`` is 9 bytes; walking it for object arrays must not loop forever."""
    loop: list = []
    loop.append(loop)
    path = tmp_path / "loop.pkl"
    path.write_bytes(pickle.dumps(loop, protocol=2))
    assert len(path.read_bytes()) <= 12
    out = safe_pickle_load(path)
    assert out[0] is out


@pytest.mark.parametrize(
    "labels,got",
    [
        ([0.0, 1.0, 2.0, 3.0], "list of 4 float"),
        (["0", "1", "2", "3"], "list of 4 str"),
        ([b"0", b"1", b"2", b"3"], "list of 4 bytes"),
        ([True, False, True, False], "list of 4 bool"),
        ([[0], [1], [2], [3]], "list of 4 list"),
        (np.zeros((4, 1), np.int64), "array of int64 shape (4, 1)"),
        (np.array([0.0, 1.0, 2.0, 3.0]), "array of float64 shape (4,)"),
    ],
)
def test_labels_of_the_wrong_kind_are_dataset_errors(tmp_path, labels, got):
    write_fake_cifar(tmp_path, 4)
    path = tmp_path / CIFAR10_PY.folder / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": labels}, 2))
    with pytest.raises(DatasetError, match=re.escape(f"data_batch_2: b'labels' must be a list of 4 ints in 0..9, got {got}")):
        load_cifar10(tmp_path, checksums=False)


def test_labels_out_of_int_range_are_dataset_errors(tmp_path):
    write_fake_cifar(tmp_path, 4)
    path = tmp_path / CIFAR10_PY.folder / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 2**70]}, 2))
    with pytest.raises(DatasetError, match=r"data_batch_2: labels outside 0..9 \(0..1180591620717411303424\)"):
        load_cifar10(tmp_path, checksums=False)


def test_a_checksum_mapping_that_lacks_a_file_does_not_skip_it(tmp_path):
    sums = write_fake_cifar(tmp_path, 4)
    del sums["data_batch_4"]
    with pytest.raises(ChecksumError, match="data_batch_4: the checksums given have no md5 for data_batch_4"):
        load_cifar10(tmp_path, checksums=sums)


def test_an_empty_batch_pickled_with_protocol_2_is_read(tmp_path):
    write_fake_cifar(tmp_path, 4)
    path = tmp_path / CIFAR10_PY.folder / "data_batch_5"
    path.write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=2))
    ds = load_cifar10(tmp_path, checksums=False)
    assert ds.x_train.shape == (16, 32, 32, 3) and ds.y_train.shape == (16,)


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_identical_batch_files_are_detected(tmp_path, fmt):
    write_fake_cifar(tmp_path, 3, fmt=fmt)
    layout = data._LAYOUTS[fmt]
    folder = tmp_path / layout.folder
    (folder / layout.test[0]).write_bytes((folder / layout.train[0]).read_bytes())  # test == train
    with pytest.raises(DatasetError, match=rf"{layout.test[0]} is identical to .*{layout.train[0]}"):
        load_cifar10(tmp_path, checksums=False)

"""A small pure-numpy writer of FFCV ``.beton`` files, for tests that cannot install ffcv.

It writes what ``ffcv.writer.DatasetWriter`` writes (format version 2), byte for byte for the
same samples written by one worker, following FFCV's own structures:

- ``ffcv/types.py``: the header, the field descriptors, the allocation table entries;
- ``ffcv/fields/*.py``: each field's type id, arguments (``to_binary``), metadata entry
  (``metadata_type``) and ``encode``;
- ``ffcv/writer.py``: the order of the file (header, descriptors, metadata table, pages,
  allocation table) and ``handle_sample``'s retry of a sample that does not fit in a page;
- ``ffcv/memory_allocator.py``: pages of ``page_size`` bytes from the metadata's end rounded up
  to a page, each written whole.

    write_beton(path, {"label": IntField(), "image": RGBImageField()}, [(0, img), ...])

Image values: an ``(H, W, 3)`` uint8 array is stored raw (``write_mode='raw'``, FFCV's default)
or, with ``write_mode='jpg'``, JPEG-encoded with Pillow; ``bytes`` are taken for an
already-encoded JPEG (stored in mode jpg, its size read from its SOF marker), so one field
may mix both, as FFCV's ``'proportion'`` and ``'smart'`` write modes do.
``read_beton`` reads a file back the way ``ffcv.reader.Reader`` does.
"""

import io
import json
import os

import numpy as np

# ffcv/types.py
CURRENT_VERSION = 2
HeaderType = np.dtype(
    [
        ("version", "<u2"),
        ("num_fields", "<u2"),
        ("page_size", "<u4"),
        ("num_samples", "<u8"),
        ("alloc_table_ptr", "<u8"),
    ],
    align=True,
)  # 24 bytes
ALLOC_TABLE_TYPE = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
FieldDescType = np.dtype(
    [("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True
)  # 1041 bytes: no padding, every member has alignment 1
# ffcv/fields/base.py
ARG_TYPE = np.dtype([("", "<u1", 1024)])
# ffcv/writer.py
MIN_PAGE_SIZE = 1 << 21
MAX_PAGE_SIZE = 1 << 32
# ffcv/fields/rgb_image.py
IMAGE_MODES = {"jpg": 0, "raw": 1}


class Field:
    """ffcv.fields.Field: a type id, 1024 bytes of arguments, a metadata entry, encode()."""

    type_id = 255

    def to_binary(self):
        return np.zeros(1, dtype=ARG_TYPE)[0]


class FloatField(Field):  # ffcv/fields/basics.py
    type_id = 0
    metadata_type = np.dtype("<f8")

    def encode(self, destination, field, malloc):
        destination[0] = field


class IntField(Field):  # ffcv/fields/basics.py
    type_id = 1
    metadata_type = np.dtype("<i8")

    def encode(self, destination, field, malloc):
        destination[0] = field


class BytesField(Field):  # ffcv/fields/bytes.py: a 1-D uint8 array (bytes accepted too)
    type_id = 3
    metadata_type = np.dtype([("ptr", "<u8"), ("size", "<u8")])  # packed: 16 bytes, align 1

    def encode(self, destination, field, malloc):
        field = np.frombuffer(bytes(field), dtype="<u1") if isinstance(field, bytes) else field
        ptr, buffer = malloc(field.size)
        buffer[:] = field
        destination["ptr"] = ptr
        destination["size"] = field.size


class JSONField(BytesField):  # ffcv/fields/json.py: the JSON text and a NUL, as bytes
    type_id = 5

    def encode(self, destination, field, malloc):
        content = (json.dumps(field) + "\0").encode("utf8")
        return super().encode(destination, np.frombuffer(content, dtype="uint8"), malloc)


class NDArrayField(Field):  # ffcv/fields/ndarray.py
    type_id = 4
    metadata_type = np.dtype("<u8")  # the pointer; the size is the field's
    ArgsType = np.dtype([("shape", "<u8", 32), ("type_length", "<u8")])  # 264 bytes

    def __init__(self, dtype, shape):
        self.dtype, self.shape = np.dtype(dtype), tuple(shape)
        self.element_size = self.dtype.itemsize * int(np.prod(shape))

    def to_binary(self):
        result = np.zeros(1, dtype=ARG_TYPE)[0]
        header = np.zeros(1, dtype=self.ArgsType)
        header["shape"][0][: len(self.shape)] = np.array(self.shape).astype("<u8")
        encoded_type = np.frombuffer(json.dumps(self.dtype.descr).encode("ascii"), dtype="<u1")
        header["type_length"][0] = len(encoded_type)
        to_write = np.concatenate([header.view("<u1"), encoded_type])
        result[0][: to_write.shape[0]] = to_write
        return result

    def encode(self, destination, field, malloc):
        destination[0], data_region = malloc(self.element_size)
        data_region[:] = np.ascontiguousarray(field, dtype=self.dtype).reshape(-1).view("<u1")


class RGBImageField(Field):  # ffcv/fields/rgb_image.py (no resizing: max_resolution=None)
    type_id = 2
    metadata_type = np.dtype(
        [("mode", "<u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")]
    )  # packed: 13 bytes, align 1; the data's size is only in the allocation table

    def __init__(self, write_mode="raw", jpeg_quality=90):
        self.write_mode, self.jpeg_quality = write_mode, jpeg_quality

    def encode(self, destination, image, malloc):
        if isinstance(image, (bytes, bytearray)):
            data, write_mode = np.frombuffer(bytes(image), dtype="<u1"), "jpg"
            height, width = jpeg_size(bytes(image))
        else:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"an RGB image is (H, W, 3) uint8, not {image.shape} {image.dtype}"
                )
            height, width = image.shape[:2]
            write_mode = self.write_mode
            if write_mode == "jpg":
                data = np.frombuffer(encode_jpeg(image, self.jpeg_quality), dtype="<u1")
            elif write_mode == "raw":
                data = np.ascontiguousarray(image).view("<u1").reshape(-1)
            else:
                raise ValueError(f"Unsupported write mode {write_mode}")
        destination["mode"] = IMAGE_MODES[write_mode]
        destination["height"], destination["width"] = height, width
        destination["data_ptr"], storage = malloc(data.nbytes)
        storage[:] = data


def encode_jpeg(image, quality):
    """FFCV encodes with OpenCV; Pillow stands in (any JPEG reads the same)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def jpeg_size(data):
    """(height, width) from a JPEG's start-of-frame marker."""
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            break
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (
                int.from_bytes(data[at + 5 : at + 7], "big"),
                int.from_bytes(data[at + 7 : at + 9], "big"),
            )
        at += 2 + length
    raise ValueError("not a JPEG with a start-of-frame marker")


TYPE_ID_HANDLER = {
    c.type_id: c for c in (FloatField, IntField, RGBImageField, BytesField, NDArrayField, JSONField)
}


def align_to_page(ptr, page_size):  # ffcv/utils.py
    return ptr if ptr % page_size == 0 else ptr + page_size - ptr % page_size


class MemoryAllocator:
    """ffcv/memory_allocator.py for one worker: pages are written whole, in order, the first
    after zeros up to its (page-aligned) offset."""

    def __init__(self, fp, offset_start, page_size):
        self.fp, self.page_size = fp, page_size
        self.offset = align_to_page(offset_start, page_size)
        self.next_page_allocated = 0
        self.page_offset, self.my_page = 0, -1
        self.page_data = np.zeros(page_size, "<u1")
        self.allocations = []
        self.current_sample_id = None

    @property
    def space_left_in_page(self):
        return 0 if self.my_page < 0 else self.page_size - self.page_offset

    def malloc(self, size):
        if size > self.page_size:
            raise ValueError(f"Tried allocating {size} but page size is {self.page_size}")
        if size > self.space_left_in_page:
            self.flush_page()
            # We book the next available page in the file.
            self.my_page = self.next_page_allocated
            self.next_page_allocated += 1
            self.page_offset = 0
            self.page_data.fill(0)
            # A sample that started on the previous page is given up and written again.
            region_in_previous_page = False
            while self.allocations and self.allocations[-1][0] == self.current_sample_id:
                self.allocations.pop()
                region_in_previous_page = True
            if region_in_previous_page:
                raise MemoryError("Not enough memory to fit the whole sample")
        previous_offset = self.page_offset
        self.page_offset += size
        buffer = self.page_data[previous_offset : self.page_offset]
        # Note: as in FFCV, an empty first allocation (no page yet) points a page early.
        ptr = self.offset + self.my_page * self.page_size + previous_offset
        self.allocations.append((self.current_sample_id, ptr, size))
        return ptr, buffer

    def flush_page(self):
        if self.my_page < 0:
            return
        expected_file_offset = self.offset + self.my_page * self.page_size
        if self.my_page == 0:
            current_location = self.fp.seek(0, os.SEEK_END)
            self.fp.write(bytes(expected_file_offset - current_location))
        self.fp.seek(expected_file_offset)
        self.fp.write(self.page_data.tobytes())


def write_beton(path, fields, samples, page_size=4 * MIN_PAGE_SIZE, check_page_size=True):
    """Write ``samples`` (tuples, one value per field, in ``fields``' order) as
    ``DatasetWriter(path, fields, page_size).from_indexed_dataset(samples)`` would with one
    worker. ``check_page_size=False`` lets tests use pages smaller than FFCV's 2 MiB minimum
    (a power of two still) to exercise samples that do not fit in a page's remainder."""
    if page_size & (page_size - 1) or page_size == 0:
        raise ValueError("page_size isnt a power of 2")
    if check_page_size and not MIN_PAGE_SIZE <= page_size < MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be in [{MIN_PAGE_SIZE}, {MAX_PAGE_SIZE})")
    # types.get_metadata_type: one entry per field, named f0, f1, ... by numpy, align=True.
    metadata_type = np.dtype([("", f.metadata_type) for f in fields.values()], align=True)
    num_samples = len(samples)

    # DatasetWriter.prepare: the header (its allocation table pointer written last), then the
    # field descriptors.
    header = np.zeros(1, dtype=HeaderType)[0]
    header["version"] = CURRENT_VERSION
    header["num_samples"] = num_samples
    header["num_fields"] = len(fields)
    header["page_size"] = page_size
    descriptors = np.zeros(len(fields), dtype=FieldDescType)
    for i, (name, field) in enumerate(fields.items()):
        encoded = np.frombuffer(name.encode("ascii"), dtype="<u1")[:16]
        descriptors[i]["type_id"] = field.type_id
        descriptors[i]["name"][: len(encoded)] = encoded
        descriptors[i]["arguments"][:] = field.to_binary()[0]
    metadata_start = HeaderType.itemsize + descriptors.nbytes
    metadata = np.zeros(num_samples, dtype=metadata_type)
    data_region_start = metadata_start + metadata.nbytes

    with open(path, "w+b") as fp:
        fp.write(header.tobytes())
        fp.write(descriptors.tobytes())
        allocator = MemoryAllocator(fp, data_region_start, page_size)
        # writer.handle_sample, for each sample in order.
        for dest_ix, sample in enumerate(samples):
            for attempt in range(2):
                try:
                    allocator.current_sample_id = dest_ix
                    values = zip(metadata_type.names, fields.values(), sample, strict=True)
                    for field_name, field, value in values:
                        destination = metadata[field_name][dest_ix : dest_ix + 1]
                        field.encode(destination, value, allocator.malloc)
                    break
                except MemoryError:
                    if attempt == 1:
                        raise
        allocator.flush_page()
        # DatasetWriter.finalize: the metadata table, the allocation table at the end, the header.
        fp.seek(metadata_start)
        fp.write(metadata.tobytes())
        alloc_table_ptr = fp.seek(0, os.SEEK_END)
        fp.write(np.array(allocator.allocations, dtype=ALLOC_TABLE_TYPE).tobytes())
        header["alloc_table_ptr"] = alloc_table_ptr
        fp.seek(0)
        fp.write(header.tobytes())


def read_beton(path):
    """(field names, samples as tuples), read as ffcv.reader.Reader and its decoders do:
    ints and floats from the metadata, bytes by (ptr, size), JSON parsed, images as
    ("jpg", bytes) or ("raw", (H, W, 3) array) with sizes from the allocation table."""
    data = np.fromfile(path, dtype="<u1")
    header = data[: HeaderType.itemsize].view(HeaderType)[0]
    assert header["version"] == CURRENT_VERSION, header["version"]
    n = int(header["num_fields"])
    end = HeaderType.itemsize + n * FieldDescType.itemsize
    descriptors = data[HeaderType.itemsize : end].view(FieldDescType)
    names = [d["name"].tobytes().decode("ascii").split("\0")[0] for d in descriptors]
    handlers = []
    for d in descriptors:
        cls = TYPE_ID_HANDLER[int(d["type_id"])]
        if cls is NDArrayField:  # NDArrayField.from_binary
            args = d["arguments"]
            h = args[: NDArrayField.ArgsType.itemsize].view(NDArrayField.ArgsType)[0]
            descr = json.loads(args[264 : 264 + int(h["type_length"])].tobytes().decode("ascii"))
            shape = list(h["shape"])
            while shape and shape[-1] == 0:
                shape.pop()
            handlers.append(NDArrayField(np.dtype([tuple(x) for x in descr])["f0"], shape))
        else:
            handlers.append(cls())
    metadata_type = np.dtype([("", h.metadata_type) for h in handlers], align=True)
    rows = data[end : end + int(header["num_samples"]) * metadata_type.itemsize].view(metadata_type)
    table = data[int(header["alloc_table_ptr"]) :].view(ALLOC_TABLE_TYPE)
    # An empty allocation can share its pointer with the next: the larger size is the one.
    size_at = {int(p): int(s) for p, s in sorted(zip(table["ptr"], table["size"], strict=True))}
    samples = []
    for row in rows:
        values = []
        for name, h in zip(metadata_type.names, handlers, strict=True):
            m = row[name]
            if isinstance(h, (IntField, FloatField)):
                values.append(m.item())
            elif isinstance(h, BytesField):
                raw = data[int(m["ptr"]) : int(m["ptr"]) + int(m["size"])].tobytes()
                values.append(json.loads(raw.split(b"\0")[0]) if isinstance(h, JSONField) else raw)
            elif isinstance(h, NDArrayField):
                raw = data[int(m) : int(m) + h.element_size]
                values.append(raw.view(h.dtype).reshape(h.shape))
            else:
                ptr, height, width = int(m["data_ptr"]), int(m["height"]), int(m["width"])
                if m["mode"] == IMAGE_MODES["jpg"]:
                    values.append(("jpg", data[ptr : ptr + size_at[ptr]].tobytes()))
                else:
                    pixels = data[ptr : ptr + height * width * 3]
                    values.append(("raw", pixels.reshape(height, width, 3)))
        samples.append(tuple(values))
    return names, samples


def tiny_jpeg(height, width):
    """Bytes shaped like a JPEG (SOI, SOF0 with the size, EOI), enough for jpeg_size and for
    readers that only move bytes; not a decodable image."""
    sof = bytes([0xFF, 0xC0, 0, 11, 8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + sof + bytes([1, 1, 0x11, 0]) + b"\xff\xd9"


def _self_check():
    import tempfile

    rng = np.random.default_rng(0)
    fields = {
        "label": IntField(),
        "score": FloatField(),
        "blob": BytesField(),
        "meta": JSONField(),
        "image": RGBImageField(),
        "emb": NDArrayField(np.float32, (2, 3)),
    }
    samples = []
    for i in range(5):
        image = (
            rng.integers(0, 256, (3 + i, 4, 3), dtype=np.uint8) if i % 2 else tiny_jpeg(7, 9 + i)
        )
        blob = rng.integers(0, 256, i * 3, dtype=np.uint8)
        samples.append((i - 2, i / 4, blob, {"i": i}, image, rng.random((2, 3), dtype=np.float32)))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.beton")
        write_beton(path, fields, samples)
        names, back = read_beton(path)
        assert names == list(fields), names
        size = os.path.getsize(path)
        header = np.fromfile(path, dtype=HeaderType, count=1)[0]
        # One page, starting at the metadata's end rounded to a page, then 5 * 4 allocations
        # (the first sample's empty blob too).
        assert header["alloc_table_ptr"] == 4 * MIN_PAGE_SIZE * 2, header
        assert size == header["alloc_table_ptr"] + 20 * ALLOC_TABLE_TYPE.itemsize, size
        for s, b in zip(samples, back, strict=True):
            assert b[:2] == s[:2] and b[2] == s[2].tobytes() and b[3] == s[3], (s, b)
            if isinstance(s[4], bytes):
                assert b[4] == ("jpg", s[4])
            else:
                assert b[4][0] == "raw" and (b[4][1] == s[4]).all()
            assert (b[5] == s[5]).all()

        # A sample whose second value does not fit in the rest of a page starts again on the
        # next one (its first value stays behind in the old page, unreferenced).
        two = {"a": BytesField(), "b": BytesField()}
        rows = [
            (np.full(300, 2 * k, np.uint8), np.full(300, 2 * k + 1, np.uint8)) for k in (0, 1, 2)
        ]
        write_beton(path, two, rows, page_size=1024, check_page_size=False)
        _, back = read_beton(path)
        assert back == [(a.tobytes(), b.tobytes()) for a, b in rows]
        ptr = int(np.fromfile(path, dtype=HeaderType, count=1)[0]["alloc_table_ptr"])
        table = np.fromfile(path, dtype="<u1")[ptr:].view(ALLOC_TABLE_TYPE)
        pages = [int(p) // 1024 - int(table["ptr"][0]) // 1024 for p in table["ptr"]]
        assert pages == [0, 0, 1, 1, 2, 2] and [int(p) % 1024 for p in table["ptr"]] == [0, 300] * 3
    print("beton_writer self-check passed")


if __name__ == "__main__":
    _self_check()

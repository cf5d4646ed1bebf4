"""Datasets on S3, against a real S3-compatible server on loopback (moto_server, started here),
with a fault-injecting proxy between slipstream and the server for the failure cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import slipstream as ss
from s3_server import Fault, MotoServer, free_port, proxy, upload_dir

pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("moto_server").exists(),
    reason="moto_server is not installed (make installs it)",
)

SECRET = "s3cr3t-never-printed"


@pytest.fixture(scope="module")
def server():
    s = MotoServer()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bucket(server: MotoServer, demo_dir: Path, full_dir: Path) -> str:
    client = server.client()
    client.create_bucket(Bucket="data")
    upload_dir(client, "data", "demo/", demo_dir)
    upload_dir(client, "data", "full/", full_dir)
    return "data"


def options(endpoint: str, **extra) -> dict:
    return {
        "endpoint_url": endpoint,
        "aws_access_key_id": "AKIDTEST",
        "aws_secret_access_key": SECRET,
        "region_name": "us-east-1",
        "part_bytes": 256 << 10,
        **extra,
    }


def open_s3(url: str, endpoint: str, cache: Path, **kw) -> ss.SlipstreamDataset:
    storage = options(endpoint, **kw.pop("storage", {}))
    return ss.SlipstreamDataset(url, cache_dir=cache, progress=False, storage_options=storage, **kw)


def same_samples(a: ss.SlipstreamDataset, b: ss.SlipstreamDataset) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k in x:
            assert comparable(x[k]) == comparable(y[k]), (i, k)


def comparable(value):
    """Arrays, tensors and PIL images as bytes; other values as they are."""
    if hasattr(value, "numpy") and hasattr(value, "dtype"):  # a torch tensor
        value = value.numpy()
    if hasattr(value, "tobytes") and not isinstance(value, bytes):
        return (type(value).__name__, getattr(value, "shape", None), value.tobytes())
    return value


def chunk_gets(p) -> list[str]:
    return p.requests(lambda r: r.startswith("GET") and "chunk-" in r)


def test_s3_dataset_equals_the_local_one(server, bucket, full_dir, demo_dir, tmp_path) -> None:
    local = ss.SlipstreamDataset(full_dir, cache_dir=tmp_path / "local", progress=False)
    remote = open_s3(f"s3://{bucket}/full/", server.url, tmp_path / "remote")
    same_samples(remote, local)
    photos = open_s3(f"s3://{bucket}/demo", server.url, tmp_path / "remote")
    same_samples(photos, ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "local"))


def test_second_open_downloads_nothing(server, bucket, tmp_path) -> None:
    url = f"s3://{bucket}/demo/"
    with proxy(server) as p:
        first = open_s3(url, p.url, tmp_path)
        first.verify()  # waits for every chunk (the dataset is read while it downloads)
        n_chunks = len(chunk_gets(p))
        assert n_chunks >= 3
        again = open_s3(url, p.url, tmp_path)
        assert len(chunk_gets(p)) == n_chunks, "the cache was reused, no chunk fetched"
        assert again._native.cache_path == first._native.cache_path
        # Without the cache but with the mirror: an `s3 sync` skips every file, then builds.
        Path(first._native.cache_path).unlink()
        rebuilt = open_s3(url, p.url, tmp_path)
        rebuilt.verify()
        assert len(chunk_gets(p)) == n_chunks
        assert rebuilt[5]["image"] == first[5]["image"]


def test_a_changed_object_is_noticed(server, bucket, full_dir, tmp_path) -> None:
    client = server.client()
    upload_dir(client, bucket, "changing/", full_dir)
    url = f"s3://{bucket}/changing/"
    before = open_s3(url, server.url, tmp_path)
    # Replace the dataset by another one with other samples (new ETags everywhere).
    other = tmp_path / "other"
    import litdata_datasets

    litdata_datasets.make("full", other, 7)
    for key in [
        o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="changing/")["Contents"]
    ]:
        client.delete_object(Bucket=bucket, Key=key)
    upload_dir(client, bucket, "changing/", other)
    after = open_s3(url, server.url, tmp_path)
    assert len(before) == 12 and len(after) == 7
    same_samples(after, ss.SlipstreamDataset(other, cache_dir=tmp_path / "local"))


@pytest.mark.parametrize(
    "fault",
    [
        Fault("503", "chunk-", times=3),
        Fault("500", "chunk-", times=2),
        Fault("reset", "chunk-", times=3),
        Fault("truncate", "chunk-", times=2),
        Fault("stall", "chunk-", times=1, seconds=3),
        Fault("503", "index.json", times=2),
        Fault("503", "list-type", times=2),
    ],
    ids=lambda f: f"{f.kind}-{f.match}",
)
def test_transient_faults_do_not_change_the_result(
    server, bucket, demo_dir, tmp_path, fault
) -> None:
    with proxy(server, fault) as p:
        ds = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path, storage={"read_timeout": 1})
        ds.verify()
        assert p.injected, "the fault was injected"
    same_samples(ds, ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "local"))


def test_missing_object_names_it_and_leaves_no_cache(server, bucket, demo_dir, tmp_path) -> None:
    client = server.client()
    keys = upload_dir(client, bucket, "holed/", demo_dir)
    victim = next(k for k in keys if "chunk-" in k)
    client.delete_object(Bucket=bucket, Key=victim)
    with pytest.raises(ss.FormatError, match=victim.split("/")[-1]):
        # Opening starts the download; reading a sample of the missing chunk fails.
        open_s3(f"s3://{bucket}/holed/", server.url, tmp_path).verify()
    assert not list(tmp_path.glob("*.slipcache"))


def test_access_denied_names_the_object_and_resumes_later(server, bucket, tmp_path) -> None:
    url = f"s3://{bucket}/demo/"
    with proxy(server, Fault("403", "chunk-0-3", times=100)) as p:
        with pytest.raises(ss.SlipstreamIOError) as e:
            open_s3(url, p.url, tmp_path).verify()
        message = str(e.value)
        assert "chunk-0-3" in message and "AccessDenied" in message, message
        assert SECRET not in message and "AKIDTEST" not in message
    assert not list(tmp_path.glob("*.slipcache")), "no cache from a failed download"
    # What the mirror on disk says is complete, not what was requested: a part in flight when
    # the download failed may or may not have finished, depending on timing.
    complete = completed_parts(tmp_path)
    assert not any("chunk-0-3" in part for part in complete)
    with proxy(server) as p:
        open_s3(url, p.url, tmp_path).verify()
        again = {part_index(r) for r in chunk_gets(p)}
    assert any("chunk-0-3" in part for part in again)
    assert not (again & complete), "parts completed before the failure are not fetched again"


def test_wrong_credentials_fail_on_a_signature_checking_server(demo_dir, tmp_path) -> None:
    signed = MotoServer(check_signatures=True)
    try:
        client = signed.client()
        client.create_bucket(Bucket="signed")
        upload_dir(client, "signed", "demo/", demo_dir)
        key_id, secret = signed.key
        good = {
            "endpoint_url": signed.url,
            "aws_access_key_id": key_id,
            "aws_secret_access_key": secret,
            "region_name": "us-east-1",
        }
        url = "s3://signed/demo/"
        ds = ss.SlipstreamDataset(url, cache_dir=tmp_path / "good", storage_options=good)
        assert len(ds) == 96, "signed requests (listing, ranged GETs) are accepted"
        for name, creds, code in [
            ("wrong-secret", {"aws_secret_access_key": "not-the-secret"}, "SignatureDoesNotMatch"),
            ("unknown-key", {"aws_access_key_id": "AKIAUNKNOWN000000000"}, "InvalidAccessKeyId"),
        ]:
            with pytest.raises(ss.SlipstreamError) as e:
                ss.SlipstreamDataset(
                    url, cache_dir=tmp_path / name, storage_options={**good, **creds}
                )
            message = str(e.value)
            assert code in message and url in message, message
            assert "not-the-secret" not in message and secret not in message, message
            assert not list((tmp_path / name).rglob("*.slipcache")), "no cache left behind"
    finally:
        signed.stop()


PART_BYTES = 256 << 10  # options()' part_bytes


def part_index(request: str) -> str:
    """`GET /data/demo/chunk-0-1.bin?... range=bytes=262144-524287` → `chunk-0-1.bin#1`."""
    _method, target, *rest = request.split()
    name = target.split("?")[0].rsplit("/", 1)[-1]
    start = next((int(r[len("range=bytes=") :].split("-")[0]) for r in rest if "range=" in r), 0)
    return f"{name}#{start // PART_BYTES}"


def completed_parts(cache: Path) -> set[str]:
    """The parts of every object the S3 mirrors under `cache` hold complete, as `name#part`:
    every part of the objects their manifest lists, and the parts each `.parts` log records."""
    done = set()
    for manifest in cache.rglob(".slipstream-s3.jsonl"):
        for line in manifest.read_text().splitlines():
            name, size, _etag = json.loads(line)
            done |= {f"{name}#{k}" for k in range(max(1, -(-size // PART_BYTES)))}
    for log in cache.rglob("*.parts"):
        name = log.name.removesuffix(".parts")
        done |= {f"{name}#{k.strip()}" for k in log.read_text().splitlines()[1:] if k.strip()}
    return done


def part_of(request: str) -> str:
    """`GET /data/demo/chunk-0-1.bin?x-id=GetObject HTTP/1.1 range=bytes=0-1` → path + range."""
    _method, target, *rest = request.split()
    return target.split("?")[0] + " " + " ".join(r for r in rest if r.startswith("range="))


def test_bad_requests_are_config_errors(server, bucket, tmp_path) -> None:
    with pytest.raises(ss.ConfigError, match="password"):
        open_s3(f"s3://{bucket}/demo/", server.url, tmp_path, storage={"password": SECRET})
    with pytest.raises(ss.FormatError, match=r"index\.json"):
        open_s3(f"s3://{bucket}/nothing-here/", server.url, tmp_path)
    with pytest.raises(ss.UnsupportedError, match="gs://"):
        ss.SlipstreamDataset("gs://bucket/x", cache_dir=tmp_path)


def test_chunk_names_escaping_the_directory_are_refused(server, bucket, demo_dir, tmp_path) -> None:
    client = server.client()
    index = json.loads((demo_dir / "index.json").read_text())
    index["chunks"][0]["filename"] = "../../evil.bin"
    client.put_object(Bucket=bucket, Key="evil/index.json", Body=json.dumps(index).encode())
    client.put_object(Bucket=bucket, Key="evil.bin", Body=b"x" * 8)
    with pytest.raises(ss.FormatError, match="evil"):
        open_s3(f"s3://{bucket}/evil/", server.url, tmp_path)
    assert not list(tmp_path.rglob("evil.bin"))


def test_cli_build_from_s3(server, bucket, tmp_path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": SECRET}
    command = [sys.executable, "-m", "slipstream", "build", f"s3://{bucket}/demo/"]
    command += ["--endpoint-url", server.url, "--cache-dir", str(tmp_path), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(".slipcache")


def test_ranks_on_one_node_download_once(server, bucket, tmp_path) -> None:
    code = (
        "import sys, slipstream as ss; "
        "ss.SlipstreamDataset(sys.argv[1], cache_dir=sys.argv[2], progress=False, "
        "storage_options={'endpoint_url': sys.argv[3], 'aws_access_key_id': 'a', "
        "'aws_secret_access_key': 'b'}).verify()"
    )
    with proxy(server) as p:
        ranks = [
            subprocess.Popen(
                [sys.executable, "-c", code, f"s3://{bucket}/demo/", str(tmp_path), p.url]
            )
            for _ in range(3)
        ]
        assert [r.wait(timeout=120) for r in ranks] == [0, 0, 0]
        gets = chunk_gets(p)
    names = [g.split()[1].split("?")[0] for g in gets]
    assert len(set(names)) >= 3
    assert len(names) == len(set(names)), "each chunk fetched once (one GET: under part_bytes)"


# -- caches shared through S3 (remote_cache=) -------------------------------------------------


def shared_objects(server, prefix: str) -> dict[str, int]:
    listing = server.client().list_objects_v2(Bucket="data", Prefix=prefix)
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


def test_a_shared_cache_replaces_the_build_on_other_machines(server, bucket, tmp_path) -> None:
    url, shared = f"s3://{bucket}/demo/", f"s3://{bucket}/caches/"
    with proxy(server) as p:
        built = open_s3(url, p.url, tmp_path / "machine-a", remote_cache=shared)
        built_chunks = len(chunk_gets(p))
        assert built_chunks >= 3
        uploaded = shared_objects(server, "caches/")
        manifests = [k for k in uploaded if k.endswith("/manifest.json")]
        assert len(manifests) == 1, uploaded
        entry = manifests[0].rsplit("/", 1)[0]
        cache_bytes = Path(built._native.cache_path).read_bytes()
        assert uploaded[f"{entry}/cache.slipcache"] == len(cache_bytes)
        manifest = json.loads(
            server.client().get_object(Bucket="data", Key=manifests[0])["Body"].read()
        )
        assert manifest["samples"] == len(built) and manifest["size"] == len(cache_bytes)
        assert entry.endswith(manifest["fingerprint"])
        # Above 5 MiB (S3's smallest part) the cache went up in parts.
        assert len(cache_bytes) > 5 << 20
        assert any("uploadId=" in r and r.startswith("PUT") for r in p.log), p.log

        fetched = open_s3(url, p.url, tmp_path / "machine-b", remote_cache=shared)
        assert len(chunk_gets(p)) == built_chunks, "no chunk downloaded: the cache came whole"
        assert any("cache.slipcache" in r and r.startswith("GET") for r in p.log)
    assert Path(fetched._native.cache_path).read_bytes() == cache_bytes
    same_samples(fetched, built)


def test_half_uploaded_or_corrupt_shared_caches_are_not_used(
    server, bucket, demo_dir, tmp_path, capfd
) -> None:
    client = server.client()
    upload_dir(client, bucket, "demo2/", demo_dir)
    url, shared = f"s3://{bucket}/demo2/", f"s3://{bucket}/caches-2/"
    first = open_s3(url, server.url, tmp_path / "a", remote_cache=shared)
    keys = shared_objects(server, "caches-2/")
    manifest = next(k for k in keys if k.endswith("manifest.json"))
    cache_key = manifest.replace("manifest.json", "cache.slipcache")

    # No manifest: an upload that never finished. The next machine builds (and shares).
    client.delete_object(Bucket=bucket, Key=manifest)
    with proxy(server) as p:
        open_s3(url, p.url, tmp_path / "b", remote_cache=shared)
        assert chunk_gets(p), "built from the dataset"
    assert manifest in shared_objects(server, "caches-2/"), "shared again after the build"

    # A damaged cache object (same size): refused after download, built here, shared again.
    damaged = bytearray(client.get_object(Bucket=bucket, Key=cache_key)["Body"].read())
    damaged[len(damaged) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=cache_key, Body=bytes(damaged))
    capfd.readouterr()
    with proxy(server) as p:
        rebuilt = open_s3(url, p.url, tmp_path / "c", remote_cache=shared)
        assert chunk_gets(p), "built from the dataset"
    warning = capfd.readouterr().err
    assert "not using the shared cache" in warning and "checksum" in warning, warning
    assert SECRET not in warning
    same_samples(rebuilt, first)
    healed = client.get_object(Bucket=bucket, Key=cache_key)["Body"].read()
    assert healed == Path(rebuilt._native.cache_path).read_bytes()


def test_cli_sync_push_and_pull(server, bucket, demo_dir, tmp_path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": SECRET}

    def sync(direction: str, cache_dir: Path, shared: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "slipstream", "sync", direction, str(demo_dir)]
        command += ["--remote-cache", shared, "--endpoint-url", server.url]
        command += ["--cache-dir", str(cache_dir), "--quiet"]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    missing = sync("pull", tmp_path / "b", f"s3://{bucket}/sync/")
    assert missing.returncode == 1 and "holds no cache" in missing.stderr, missing.stderr
    pushed = sync("push", tmp_path / "a", f"s3://{bucket}/sync/")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().startswith(f"s3://{bucket}/sync/dataset-")
    pulled = sync("pull", tmp_path / "b", f"s3://{bucket}/sync/")
    assert pulled.returncode == 0, pulled.stderr
    local = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "a", progress=False)
    assert Path(pulled.stdout.strip()).read_bytes() == Path(local._native.cache_path).read_bytes()
    assert SECRET not in pushed.stderr + pulled.stderr


def test_ranks_on_one_node_download_a_shared_cache_once(server, bucket, tmp_path) -> None:
    url, shared = f"s3://{bucket}/demo/", f"s3://{bucket}/caches-ranks/"
    open_s3(url, server.url, tmp_path / "builder", remote_cache=shared)
    code = (
        "import sys, slipstream as ss; "
        "ss.SlipstreamDataset(sys.argv[1], cache_dir=sys.argv[2], progress=False, "
        "remote_cache=sys.argv[4], storage_options={'endpoint_url': sys.argv[3], "
        "'aws_access_key_id': 'a', 'aws_secret_access_key': 'b'})"
    )
    with proxy(server) as p:
        node = [sys.executable, "-c", code, url, str(tmp_path / "node"), p.url, shared]
        ranks = [subprocess.Popen(node) for _ in range(3)]
        assert [r.wait(timeout=120) for r in ranks] == [0, 0, 0]
        cache_gets = [part_of(r) for r in p.requests(lambda r: "cache.slipcache" in r)]
        assert not chunk_gets(p), "nothing built: no chunk fetched"
    assert cache_gets, "the shared cache was downloaded"
    assert len(cache_gets) == len(set(cache_gets)), "each part of it fetched once"


def test_an_unreachable_shared_store_does_not_stop_anyone(demo_dir, tmp_path, capfd) -> None:
    nowhere = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "max_attempts": 1}
    nowhere |= {"aws_access_key_id": "a", "aws_secret_access_key": SECRET}

    def open_local() -> ss.SlipstreamDataset:
        return ss.SlipstreamDataset(
            demo_dir,
            cache_dir=tmp_path,
            progress=False,
            remote_cache="s3://caches/x/",
            storage_options=nowhere,
        )

    capfd.readouterr()
    built = open_local()  # no local cache: the store is tried, then the cache built here
    warnings = capfd.readouterr().err
    assert "not using the shared cache" in warnings and "could not be shared" in warnings
    assert SECRET not in warnings
    again = open_local()  # a current local cache: the store is not contacted at all
    assert capfd.readouterr().err == ""
    assert again._native.cache_path == built._native.cache_path


# -- reading a dataset while it downloads (order="quasi_random") -------------------------------


def wait_for(condition, what: str, seconds: float = 120) -> None:
    """Wait until `condition()` holds (a state, not a duration: the deadline only ends a test
    that would otherwise hang)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_quasi_random_reads_a_dataset_still_downloading(server, bucket, demo_dir, tmp_path) -> None:
    index = json.loads((demo_dir / "index.json").read_text())
    names = [c["filename"] for c in index["chunks"]]
    chunk_of = [i for i, c in enumerate(index["chunks"]) for _ in range(c["chunk_size"])]
    kw = {"batch_size": 4, "order": "quasi_random", "seed": 11}
    local = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "local", progress=False)
    expected = list(ss.SlipstreamLoader(local, **kw))
    needed = {names[chunk_of[i]] for i in expected[0]["index"].tolist()}

    held = {name: threading.Event() for name in names}
    faults = [Fault("hold", name, times=1000, release=held[name]) for name in names]
    with proxy(server, *faults) as p:
        try:
            # As many GETs at once as there are chunks, so that GETs the proxy holds back
            # (chunks of later batches, started before the epoch said what it needs first)
            # can never take every connection from the chunks the first batch needs.
            storage = {"concurrency": len(names)}
            ds = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path, storage=storage)
            assert len(ds) == len(local), "the dataset opens before any chunk arrives"
            loader = ss.SlipstreamLoader(ds, **kw)
            it = iter(loader)
            got: dict = {}
            reader = threading.Thread(target=lambda: got.update(first=next(it)), daemon=True)
            reader.start()
            # Until a reader says what it wants, the download fetches one chunk at a time in
            # index order, and the epoch's order takes over once that one is done: the first
            # chunk is let through too (its GET may not have reached the server yet), as on a
            # real store it would finish.
            wait_for(lambda: loader._running, "the loader's epoch to begin")
            for name in needed | {names[0]}:
                held[name].set()
            reader.join(timeout=120)
            assert "first" in got, "the first batch came"
            late = [n for n in names if not held[n].is_set()]
            assert late, "the first batch came while chunks were still held back on the server"
            assert got["first"]["index"].tolist() == expected[0]["index"].tolist()
            for event in held.values():
                event.set()
            batches = [got["first"], *it]
        finally:
            for event in held.values():
                event.set()
    # The same batches as from the local dataset: the order is a function of (seed, epoch).
    assert len(batches) == len(expected)
    for a, b in zip(batches, expected, strict=True):
        assert a["index"].tolist() == b["index"].tolist()
        assert a["label"].tolist() == b["label"].tolist()
        assert [bytes(x) for x in a["image"]] == [bytes(x) for x in b["image"]]
    # The streamed build became an ordinary cache: reopened, nothing is fetched.
    wait_for(lambda: Path(ds.cache_path).exists(), "the cache to be written")
    with proxy(server) as p:
        again = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path)
        assert not chunk_gets(p)
    same_samples(again, local)
    assert (
        list(ss.SlipstreamLoader(again, **kw))[3]["index"].tolist() == expected[3]["index"].tolist()
    )


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_reads_a_dataset_still_downloading(server, bucket, demo_dir, tmp_path):
    """A process forked while the cache streams in (a DataLoader worker) has no view of the
    download's progress: its reads wait for the finished cache instead of hanging."""
    local = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "local", progress=False)
    held = threading.Event()
    with proxy(server, Fault("hold", "chunk-0-9", times=1000, release=held)) as p:
        try:
            ds = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    os.write(write, ds[95]["image"][-64:] + ds[3]["image"][:64])
                    status = 0
                finally:
                    os._exit(status)
            os.close(write)
            wait_for(lambda: chunk_gets(p), "the download to begin")
            held.set()
            _, status = os.waitpid(pid, 0)
            got = os.read(read, 128)
        finally:
            held.set()
    assert status == 0
    assert got == local[95]["image"][-64:] + local[3]["image"][:64]


def test_ranks_of_a_job_do_not_stream_by_default(server, bucket, tmp_path, monkeypatch) -> None:
    """One of several ranks builds the whole cache before the open returns (the others would
    wait for all of it anyway); alone, the open returns before the cache file exists."""
    held = threading.Event()
    with proxy(server, Fault("hold", "chunk-0-9", times=1000, release=held)) as p:
        try:
            alone = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path / "alone")
            assert not Path(alone.cache_path).exists(), "returned while a chunk was held"
        finally:
            held.set()
        alone.verify()
        monkeypatch.setenv("WORLD_SIZE", "2")
        rank = open_s3(f"s3://{bucket}/demo/", p.url, tmp_path / "rank")
        assert Path(rank.cache_path).exists()

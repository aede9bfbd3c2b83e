"""Throughput and latency of POST /search against a real uvicorn server on loopback, next to the
raw batched forward throughput of the same encoder in-process (the ceiling), measured in one run;
/search on real face photos with five-point alignment against the same network on the whole
picture; and single-query latency of flat vs HNSW search over a large synthetic gallery.

    python -m bench.service [--bundle DIR] [--requests 200] [--gallery-vectors 1000000] [--json]
                            [--parts http faces search]

Without --bundle, an untrained encoder of the default training config (resnet18, 96 px, 128-d)
is exported to a temporary folder: throughput does not depend on the weights. The faces part
uploads LFW photos (../shared/data) and is left out, saying so, when they are absent.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.table import median_seconds, print_rows
from lookalike.bundle import Encoder, load_bundle
from lookalike.cli import start_server, stop_server
from lookalike.faces import FaceAlignment
from lookalike.index import build_index, create_kind

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw" / "images"


def default_bundle(
    directory: Path, face: FaceAlignment | None = None, backbone: str = "resnet18", size: int = 96
) -> Path:
    """An untrained bundle (speed does not depend on the weights); `dlib_resnet` has no head, as
    `lookalike models bundle` makes it."""
    from lookalike.bundle import BundleSpec, write_bundle
    from lookalike.images import Preprocessing
    from lookalike.training import EmbeddingModel

    torch.manual_seed(0)  # the face and whole-picture bundles carry the same weights
    model = EmbeddingModel(backbone, None if backbone == "dlib_resnet" else 128)
    cfg = model.data_config()
    spec = BundleSpec(
        backbone=backbone,
        embedding_size=model.embedding_size,
        threshold=0.5,
        preprocessing=Preprocessing(image_size=size, mean=cfg["mean"], std=cfg["std"], face=face),
    )
    write_bundle(directory, model, spec)
    return directory


def photo(seed: int, size: int = 160) -> bytes:
    """A JPEG of a typical upload's size for a face crop."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def raw_forward_throughput(encoder: Encoder, images: list[bytes], batch: int, seconds: float = 5.0) -> float:
    """Images/s of decode + preprocess + forward in batches of `batch`, in this process."""

    def step() -> None:
        encoder.embed([Image.open(io.BytesIO(b)).convert("RGB") for b in images[:batch]])

    step()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += batch
    return done / (time.perf_counter() - start)


def multipart(image: bytes, boundary: str = "lookalikebenchboundary") -> tuple[bytes, str]:
    """A /search request body, encoded once: the load generator then only writes bytes."""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def load(base: str, images: list[bytes], concurrency: int, total: int) -> tuple[float, list[float]]:
    """`concurrency` keep-alive connections sending pre-encoded requests, as wrk does: the load
    generator shares this machine's cores with the server, so it must cost next to nothing."""
    host, port = base.removeprefix("http://").split(":")
    requests = []
    for image in images:
        body, content_type = multipart(image)
        head = (
            f"POST /search?k=5 HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    latencies: list[float] = []
    counter = iter(range(total))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for n in counter:
                start = time.perf_counter()
                writer.write(requests[n % len(requests)])
                header = await reader.readuntil(b"\r\n\r\n")
                status = int(header.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))
                await reader.readexactly(length)
                if status != 200:
                    raise RuntimeError(f"/search answered {status}")
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    counter = iter(range(min(total, 4 * concurrency)))  # warm-up
    await asyncio.gather(*[connection() for _ in range(concurrency)])
    latencies.clear()
    counter = iter(range(total))
    start = time.perf_counter()
    await asyncio.gather(*[connection() for _ in range(concurrency)])
    return total / (time.perf_counter() - start), latencies


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * statistics.median(seconds), "p99_ms": 1000 * float(np.percentile(seconds, 99))}


def search_latency(n_vectors: int, dim: int, queries: int = 200) -> list[dict]:
    """The product's own index kinds (their default parameters) on unit vectors; queries are
    gallery vectors plus a little noise, so each has a true nearest neighbour."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_vectors, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probe = vectors[rng.choice(n_vectors, queries, replace=False)]
    probe = probe + 0.01 * rng.standard_normal(probe.shape, dtype=np.float32)
    rows, exact = [], None
    for name in ("flat", "hnsw"):
        kind = create_kind(name)
        start = time.perf_counter()
        index = kind.create(dim, vectors)
        index.add_with_ids(vectors, np.arange(n_vectors, dtype=np.int64))
        build = time.perf_counter() - start
        times, found = [], []
        for q in probe:
            t = time.perf_counter()
            found.append(index.search(q[None], 10)[1][0])
            times.append(time.perf_counter() - t)
        exact = found if exact is None else exact
        rows.append(
            {
                "index": name,
                "vectors": n_vectors,
                "build_s": build,
                **percentiles_ms(times),
                "recall@1_vs_flat": float(np.mean([a[0] == b[0] for a, b in zip(found, exact, strict=True)])),
                "recall@10_vs_flat": float(
                    np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--gallery-vectors", type=int, default=1_000_000)
    parser.add_argument("--parts", nargs="+", choices=["http", "faces", "search"], default=["http", "faces", "search"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if "http" in args.parts:
        http_throughput(args)
    if "faces" in args.parts:
        face_throughput(args)
    if "search" in args.parts:
        print_rows(search_latency(args.gallery_vectors, 128), args.json, "single-query search latency, 128-d")


def http_throughput(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bundle = args.bundle or default_bundle(tmp_path / "bundle")
        images = [photo(seed) for seed in range(64)]
        for n, data in enumerate(images[:40]):
            (tmp_path / "gallery" / f"item{n % 10}").mkdir(parents=True, exist_ok=True)
            (tmp_path / "gallery" / f"item{n % 10}" / f"{n}.jpg").write_bytes(data)
        build_index(bundle, tmp_path / "gallery", tmp_path / "index")
        encoder = load_bundle(bundle, batch_size=args.max_batch)
        process, base = start_server(bundle, tmp_path / "index", env={"LOOKALIKE_MAX_BATCH": str(args.max_batch)})
        rows = []
        try:
            for concurrency in args.concurrency:
                # The ceiling is measured just before and just after each load, with the server idle:
                # a shared VM's speed drifts, and the ratio must compare like with like.
                before = raw_forward_throughput(encoder, images, args.max_batch)
                throughput, latencies = asyncio.run(load(base, images, concurrency, args.requests))
                ceiling = (before + raw_forward_throughput(encoder, images, args.max_batch)) / 2
                rows.append(
                    {
                        "concurrency": concurrency,
                        "req_per_s": throughput,
                        **percentiles_ms(latencies),
                        "raw_forward_img_per_s": ceiling,
                        "ratio_to_raw": throughput / ceiling,
                    }
                )
        finally:
            stop_server(process)
    print_rows(
        rows,
        args.json,
        f"POST /search on uvicorn (loopback, max batch {args.max_batch}) vs raw batched "
        f"forward in-process; {os.cpu_count()} CPU(s)",
    )


FACE_SETUPS = (  # (framing, alignment, backbone, input px)
    ("whole picture", None, "resnet18", 96),
    ("mtcnn + 5-point align", FaceAlignment(), "resnet18", 96),
    ("mtcnn + 5-point align", FaceAlignment(), "resnet10t", 64),  # the from-scratch face recipe
    ("mtcnn + dlib chip", FaceAlignment(template="dlib_150"), "dlib_resnet", 150),  # the converted encoder
)


def face_throughput(args: argparse.Namespace) -> None:
    """/search with real LFW uploads, through face bundles (MTCNN, five-point alignment, then the
    network) and through the same network on the whole picture: what detection costs a request,
    and what each encoder does: its raw batched forward (img/s, in-process, inputs prepared)."""
    if not LFW.is_dir():
        print(f"faces part left out: {LFW} is missing (../shared/data beside the project)")
        return
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)[:16]
    photos = [sorted(p.glob("*.jpg"))[:4] for p in people]
    uploads = [path.read_bytes() for group in photos for path in group]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for group in photos:  # the first two of each person in the gallery, all four as queries
            (tmp_path / "gallery" / group[0].parent.name).mkdir(parents=True)
            for path in group[:2]:
                (tmp_path / "gallery" / path.parent.name / path.name).write_bytes(path.read_bytes())
        for n, (framing, face, backbone, size) in enumerate(FACE_SETUPS):
            bundle = default_bundle(tmp_path / f"bundle_{n}", face, backbone, size)
            index = tmp_path / f"index_{n}"
            build_index(bundle, tmp_path / "gallery", index)
            encoder = load_bundle(bundle, batch_size=args.max_batch)
            inputs = np.random.default_rng(0).standard_normal((args.max_batch, 3, size, size), dtype=np.float32)
            forward = args.max_batch / median_seconds(lambda e=encoder, x=inputs: e.forward(x), repeats=5)
            process, base = start_server(bundle, index, env={"LOOKALIKE_MAX_BATCH": str(args.max_batch)})
            try:
                for concurrency in args.concurrency:
                    throughput, latencies = asyncio.run(load(base, uploads, concurrency, args.requests))
                    rows.append(
                        {
                            "framing": framing,
                            "encoder": f"{backbone} {size}px",
                            "forward_img_per_s": forward,
                            "concurrency": concurrency,
                            "req_per_s": throughput,
                            **percentiles_ms(latencies),
                        }
                    )
            finally:
                stop_server(process)
    print_rows(
        rows,
        args.json,
        f"POST /search with {len(uploads)} LFW photos (250 px JPEG), max batch "
        f"{args.max_batch}; {os.cpu_count()} CPU(s)",
    )


if __name__ == "__main__":
    main()

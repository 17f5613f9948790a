"""Pushes artifacts and cosign-format signatures to a test registry with the real `oras` client.

Signatures are made here, independently of the Rust verifier: the simple-signing payload is
written as cosign writes it and signed with `openssl dgst -sha256 -sign` (ECDSA P-256, DER).

    oci_tool.py push ADDR REPO TAG FILE...        prints the manifest digest
    oci_tool.py sign ADDR REPO DIGEST KEY [--payload-digest D]
                                                  pushes REPO:sha256-<hex>.sig; prints JSON
                                                  {"manifest": ..., "payload": ...} digests
Files are pushed from the current directory (oras titles layers with the given paths).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import oras.client

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"


def push(addr: str, target: str, files: list[str], annotations: dict | None = None) -> str:
    client = oras.client.OrasClient(hostname=addr, insecure=True)
    kwargs = {}
    if annotations:
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(annotations, f)
        kwargs["annotation_file"] = path
    response = client.push(files=files, target=f"{addr}/{target}", quiet=True, **kwargs)
    response.raise_for_status()
    digest = response.headers.get("Docker-Content-Digest")
    if not digest:
        sys.exit("registry returned no Docker-Content-Digest")
    return digest


def sign(addr: str, repo: str, digest: str, key: str, payload_digest: str | None) -> dict:
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": f"{addr}/{repo}"},
                "image": {"docker-manifest-digest": payload_digest or digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()
    with open("payload.json", "wb") as f:
        f.write(payload)
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key, "payload.json"],
        check=True,
        capture_output=True,
    ).stdout
    annotations = {"payload.json": {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}}
    tag = digest.replace("sha256:", "sha256-") + ".sig"
    manifest = push(addr, f"{repo}:{tag}", [f"payload.json:{SIMPLE_SIGNING}"], annotations)
    return {"manifest": manifest, "payload": "sha256:" + hashlib.sha256(payload).hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push")
    p.add_argument("addr")
    p.add_argument("repo")
    p.add_argument("tag")
    p.add_argument("files", nargs="+")
    s = sub.add_parser("sign")
    s.add_argument("addr")
    s.add_argument("repo")
    s.add_argument("digest")
    s.add_argument("key")
    s.add_argument("--payload-digest")
    args = parser.parse_args()
    if args.command == "push":
        print(push(args.addr, f"{args.repo}:{args.tag}", args.files))
    else:
        print(json.dumps(sign(args.addr, args.repo, args.digest, args.key, args.payload_digest)))


if __name__ == "__main__":
    main()

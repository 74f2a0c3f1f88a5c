"""Connects with Python's ssl module (OpenSSL) and reports what happened, as
one JSON line: {"ok": bool, "error": str, "version": str, "cert_sha256": str}.

Usage: tls_probe.py HOST PORT CA_FILE [--cert FILE --key FILE]
                    [--min-version 1.2|1.3] [--max-version 1.2|1.3]

After the handshake it sends an HTTP/1.1 request and reads the answer: a
server that refuses the client certificate says so after a TLS 1.3
handshake, so only a round trip shows it.
"""
import argparse
import hashlib
import json
import socket
import ssl

parser = argparse.ArgumentParser()
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("ca_file")
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--min-version")
parser.add_argument("--max-version")
args = parser.parse_args()

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
result = {"ok": False, "error": "", "version": "", "cert_sha256": ""}
try:
    context = ssl.create_default_context(cafile=args.ca_file)
    if args.min_version:
        context.minimum_version = VERSIONS[args.min_version]
    if args.max_version:
        context.maximum_version = VERSIONS[args.max_version]
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    with socket.create_connection((args.host, args.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=args.host) as tls:
            result["version"] = tls.version() or ""
            der = tls.getpeercert(binary_form=True) or b""
            result["cert_sha256"] = hashlib.sha256(der).hexdigest()
            tls.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            answer = tls.recv(64)
            if not answer.startswith(b"HTTP/1.1"):
                raise ConnectionError(f"no HTTP answer: {answer!r}")
            result["ok"] = True
except Exception as e:  # noqa: BLE001 - every failure is a result here
    result["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(result))

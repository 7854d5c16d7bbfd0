#!/usr/bin/env python3
"""Build data/asn.mmdb from the CSV files of the npm package @ip-location-db/asn.

The output is a MaxMind DB (IPv6 tree, IPv4 under ::/96 as in MaxMind's own files) whose
records use the GeoLite2-ASN schema:

    {"autonomous_system_number": <uint32>, "autonomous_system_organization": <string>}

so the router reads it with the same code as a real GeoLite2-ASN file.

Usage (see data/README.md for the whole refresh procedure):

    python3 -m venv /tmp/asn-venv
    /tmp/asn-venv/bin/pip install mmdb-writer==0.2.7
    (cd /tmp && npm pack @ip-location-db/asn && tar xzf ip-location-db-asn-*.tgz)
    /tmp/asn-venv/bin/python data/build-asn-mmdb.py /tmp/package --out data/asn.mmdb

mmdb-writer (MIT) pulls in netaddr (BSD); neither is needed at run time.
"""

import argparse
import csv
import ipaddress
import json
import sys
import time
from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

DATABASE_TYPE = "ip-location-db-ASN (compat=GeoLite2-ASN)"


def read_rows(path):
    """Yield (first, last, asn, organization), merging neighbours with the same AS.

    The source splits many ranges of one AS at arbitrary points; merging them first keeps the
    search tree (and the file) smaller without changing any answer.
    """
    pending = None
    with open(path, newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if len(row) < 3:
                raise SystemExit(f"{path}:{line_no}: expected at least 3 columns, got {row!r}")
            first = ipaddress.ip_address(row[0])
            last = ipaddress.ip_address(row[1])
            asn = int(row[2])
            organization = row[3].strip() if len(row) > 3 else ""
            if asn == 0:
                # AS0 marks unrouted space in the source; leaving it out keeps it "unknown".
                continue
            if (
                pending is not None
                and pending[2] == asn
                and pending[3] == organization
                and int(pending[1]) + 1 == int(first)
            ):
                pending = (pending[0], last, asn, organization)
                continue
            if pending is not None:
                yield pending
            pending = (first, last, asn, organization)
    if pending is not None:
        yield pending


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "package_dir",
        type=Path,
        help="unpacked @ip-location-db/asn package (holds asn-ipv4.csv and asn-ipv6.csv)",
    )
    parser.add_argument("--out", type=Path, default=Path("data/asn.mmdb"))
    args = parser.parse_args()

    try:
        version = json.loads((args.package_dir / "package.json").read_text())["version"]
    except (OSError, KeyError, ValueError):
        version = "unknown"

    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={
            "en": f"ASN database from @ip-location-db/asn {version} "
            "(RouteViews, NRO and DB-IP data, CC BY 4.0)"
        },
        # GeoLite2-ASN stores the number as uint32; "auto" would pick uint16 for small ones.
        int_type="u32",
    )

    started = time.monotonic()
    total = 0
    for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
        rows = 0
        for first, last, asn, organization in read_rows(args.package_dir / name):
            record = {"autonomous_system_number": asn}
            if organization:
                record["autonomous_system_organization"] = organization
            cidrs = [str(net) for net in ipaddress.summarize_address_range(first, last)]
            writer.insert_network(IPSet(cidrs), record)
            rows += 1
        print(f"{name}: {rows} merged ranges", file=sys.stderr)
        total += rows

    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(args.out))
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes, {total} ranges) "
        f"in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

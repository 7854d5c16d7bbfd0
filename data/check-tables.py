#!/usr/bin/env python3
"""Cross-check the AS numbers of carriers.csv and datacenter-asns.csv against @ip-location-db/asn.

Every AS number in the two tables must be announced in the package's CSV files, and the
`as_name` column must still match the organisation name the package gives it. A missing AS is
usually a typo; a changed name may mean the AS was sold or renamed and the row needs a look.

Usage (standard library only):

    (cd /tmp && npm pack @ip-location-db/asn && tar xzf ip-location-db-asn-*.tgz)
    python3 data/check-tables.py /tmp/package            # report only
    python3 data/check-tables.py /tmp/package --update   # also rewrite the as_name columns

Exits 1 when an AS number is missing or two rows share one, 0 otherwise (name changes are
reported but, being expected over time, do not fail).
"""

import argparse
import csv
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent
TABLES = ("carriers.csv", "datacenter-asns.csv")


def load_names(package_dir):
    names = {}
    for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
        with open(package_dir / name, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if len(row) >= 4:
                    names.setdefault(int(row[2]), row[3].strip())
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path, help="unpacked @ip-location-db/asn package")
    parser.add_argument("--update", action="store_true", help="rewrite the as_name columns")
    args = parser.parse_args()

    names = load_names(args.package_dir)
    failed = False
    for table in TABLES:
        path = DATA / table
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames
            rows = list(reader)
        seen = set()
        for line, row in enumerate(rows, start=2):
            asn = int(row["asn"].removeprefix("AS"))
            label = f"{table}:{line} AS{asn}"
            if asn in seen:
                print(f"{label}: listed twice")
                failed = True
            seen.add(asn)
            actual = names.get(asn)
            if actual is None:
                print(f"{label}: not in the ASN data (typo?)")
                failed = True
            elif actual != row["as_name"]:
                print(f"{label}: name is now {actual!r} (table says {row['as_name']!r})")
                row["as_name"] = actual
        if args.update:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        print(f"{table}: {len(rows)} rows checked", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

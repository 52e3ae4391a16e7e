"""Bulk-load registry files into a running eligibility service through its upsert RPCs.

    python -m services.eligibility.load FILE [FILE ...] --target HOST:PORT

Files are YAML or CSV (see services/eligibility/adapters/registry_file.py and the samples in
services/eligibility/samples/). Every file is validated before anything is sent; a bad file
exits with code 2 and every problem named ``<file>:<line>:<field>``. Request ids are derived
from the content, so loading the same file twice changes nothing and a changed row is applied.
Regions go first, then institutions, then persons.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Sequence

import grpc

from libs.core.errors import DomainError
from libs.platform.errors import error_details
from libs.platform.identity import PRINCIPAL_HEADER, URN_PREFIX
from medsettle.eligibility.v1 import eligibility_pb2 as pb
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from services.eligibility.adapters.registry_file import RegistryData, load_registry_file
from services.eligibility.adapters.rpc import institution_to_proto, person_to_proto


def _rid(kind: str, key: str, message: pb.Region | pb.Institution | pb.InsuredPerson) -> str:
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:24]
    return f"load-{kind}-{key}-{digest}"[:128]


def _as(urn: str) -> tuple[tuple[str, str], ...]:
    return ((PRINCIPAL_HEADER, urn),)


async def send(stub: eligibility_pb2_grpc.EligibilityServiceStub, data: RegistryData) -> int:
    """Each row goes in as the party that owns it (docs/access.md): regions as the national
    operator, institutions as their treatment-place bureau, persons as their insured-place
    bureau. The identity header is believed on loopback only (or from the gateway's
    certificate): run the loader next to the service."""
    sent = 0
    for r in data.regions:
        region = pb.Region(region_code=r.region_code, name=r.name)
        await stub.UpsertRegion(
            pb.UpsertRegionRequest(request_id=_rid("region", r.region_code, region), region=region),
            metadata=_as(f"{URN_PREFIX}operator:national"),
        )
        sent += 1
    for i in data.institutions:
        inst = institution_to_proto(i)
        await stub.UpsertInstitution(
            pb.UpsertInstitutionRequest(request_id=_rid("inst", i.institution_code, inst), institution=inst),
            metadata=_as(f"{URN_PREFIX}bureau:treatment:{i.region_code}"),
        )
        sent += 1
    for p in data.persons:
        person = person_to_proto(p)
        await stub.UpsertInsuredPerson(
            pb.UpsertInsuredPersonRequest(request_id=_rid("person", p.person_no, person), person=person),
            metadata=_as(f"{URN_PREFIX}bureau:insured:{p.insured_region}"),
        )
        sent += 1
    return sent


def read_all(paths: Sequence[str]) -> RegistryData:
    merged = RegistryData()
    problems: list[str] = []
    for path in paths:
        try:
            one = load_registry_file(path)
        except DomainError as exc:
            problems.extend(f"{v.field}: {v.description}" for v in exc.violations)
            continue
        merged.regions += one.regions
        merged.institutions += one.institutions
        merged.persons += one.persons
    if problems:
        raise SystemExit("registry data invalid:\n  " + "\n  ".join(problems))
    return merged


async def run(paths: Sequence[str], target: str) -> int:
    data = read_all(paths)
    async with grpc.aio.insecure_channel(target) as channel:
        return await send(eligibility_pb2_grpc.EligibilityServiceStub(channel), data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.eligibility.load", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="registry files (.yaml, .yml, .csv)")
    parser.add_argument("--target", required=True, help="eligibility gRPC target, e.g. 127.0.0.1:50051")
    args = parser.parse_args(argv)
    try:
        count = asyncio.run(run(args.files, args.target))
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        d = error_details(exc)
        print(f"eligibility refused: {d.code.name} {d.reason}: {d.message}", file=sys.stderr)
        for v in d.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1
    print(f"loaded {count} registry entries into {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`cleanroom-issuer`: issue demo credentials (W3C PersonhoodCredentials, or PID-like SD-JWT VCs)
and publish what verifiers need: a status list that revokes them, and issuer metadata.

    cleanroom-issuer init [--name NAME] [--url URL]     new issuer keys (issuer.json); URL is the
                                                        SD-JWT VC issuer identifier (iss)
    cleanroom-issuer did                                print the issuer's DID (W3C credentials)
    cleanroom-issuer issue --subject DID [--jwt] [--days N] [--country NL] [--status] [--out FILE]
    cleanroom-issuer issue --format dc+sd-jwt --holder-jwk JWK --given-name NAME
                           --birthdate YYYY-MM-DD [--family-name NAME] [--vct VCT] [--status]
    cleanroom-issuer metadata                           JWT VC Issuer Metadata (SD-JWT VC keys)
    cleanroom-issuer status-list create --url https://... [--kind StatusList2021|BitstringStatusList|TokenStatusList]
    cleanroom-issuer status-list publish [--out FILE] [--jwt] [--token]
    cleanroom-issuer revoke INDEX [--token] [--out FILE]    set the bit and republish

The issuer's state lives in --dir (or $CLEANROOM_ISSUER_DIR, default ./issuer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from identity.issuer.core import PID_VCT, STATUS_KINDS, Issuer
from identity.jose import JoseError


def _path(args: argparse.Namespace) -> Path:
    return Path(args.dir) / "issuer.json"


def _load(args: argparse.Namespace) -> Issuer:
    path = _path(args)
    if not path.exists():
        raise SystemExit(f"No issuer in {args.dir}: run `cleanroom-issuer init` first.")
    return Issuer.load(path)


def _write(document: dict[str, Any] | str, out: str | None) -> None:
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    if out and out != "-":
        Path(out).write_text(text + "\n")
        print(f"Wrote {out}", file=sys.stderr)
    else:
        print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cleanroom-issuer", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=os.environ.get("CLEANROOM_ISSUER_DIR", "issuer"))
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create the issuer's key")
    init.add_argument("--name", default="Demo personhood issuer")
    init.add_argument("--url", default=None, help="issuer URL of its SD-JWT VCs (iss)")
    init.add_argument("--force", action="store_true")
    commands.add_parser("did", help="print the issuer's DID")
    issue = commands.add_parser("issue", help="issue a PersonhoodCredential")
    issue.add_argument("--format", choices=["ldp_vc", "jwt_vc_json", "dc+sd-jwt"], default=None)
    issue.add_argument("--subject", help="the holder's DID (cleanroom-wallet did)")
    issue.add_argument("--holder-jwk", help="the holder key (cleanroom-wallet jwk), for dc+sd-jwt")
    issue.add_argument("--given-name", default="Ada")
    issue.add_argument("--family-name", default="")
    issue.add_argument("--birthdate", default=None, help="YYYY-MM-DD (dc+sd-jwt)")
    issue.add_argument("--vct", default=PID_VCT)
    issue.add_argument("--type", default="PersonhoodCredential")
    issue.add_argument("--jwt", action="store_true", help="JWT instead of JSON-LD")
    issue.add_argument("--days", type=float, default=365)
    issue.add_argument("--country", default=None)
    issue.add_argument("--not-over-18", action="store_true")
    issue.add_argument("--status", action="store_true", help="revocable through the status list")
    issue.add_argument("--out", default=None)
    status_list = commands.add_parser("status-list", help="create or publish the status list")
    status_commands = status_list.add_subparsers(dest="status_command", required=True)
    create = status_commands.add_parser("create")
    create.add_argument("--url", required=True, help="the HTTPS URL the list will be served at")
    create.add_argument(
        "--kind", choices=[*STATUS_KINDS, "TokenStatusList"], default="StatusList2021"
    )
    create.add_argument("--size", type=int, default=131072)
    publish = status_commands.add_parser("publish")
    publish.add_argument("--out", default=None)
    publish.add_argument("--jwt", action="store_true")
    publish.add_argument("--token", action="store_true", help="the Token Status List (SD-JWT VCs)")
    commands.add_parser("metadata", help="print JWT VC Issuer Metadata")
    revoke = commands.add_parser("revoke", help="revoke a credential by its status index")
    revoke.add_argument("index", type=int)
    revoke.add_argument("--token", action="store_true", help="in the Token Status List")
    revoke.add_argument("--out", default=None, help="also write the republished list here")
    args = parser.parse_args(argv)

    if args.command == "init":
        if _path(args).exists() and not args.force:
            raise SystemExit(f"An issuer already exists in {args.dir} (use --force to replace it).")
        issuer = Issuer.generate(args.name)
        issuer.url = args.url
        issuer.sd_jwt_signing_key()
        issuer.save(_path(args))
        print(issuer.did)
        return 0
    issuer = _load(args)
    if args.command == "did":
        print(issuer.did)
    elif args.command == "metadata":
        try:
            _write(issuer.metadata(), None)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
    elif args.command == "issue" and (args.format == "dc+sd-jwt" or args.holder_jwk):
        if not args.holder_jwk or not args.birthdate:
            raise SystemExit("dc+sd-jwt needs --holder-jwk (cleanroom-wallet jwk) and --birthdate")
        try:
            holder = json.loads(args.holder_jwk)
            token = issuer.issue_sd_jwt(
                holder_jwk=holder,
                given_name=args.given_name,
                family_name=args.family_name,
                birthdate=date.fromisoformat(args.birthdate),
                vct=args.vct,
                valid_days=args.days,
                with_status=args.status,
            )
        except (ValueError, JoseError) as exc:
            raise SystemExit(str(exc)) from exc
        issuer.save(_path(args))
        if args.status and issuer.token_status:
            print(f"status index {issuer.token_status.next_index - 1}", file=sys.stderr)
        _write(token, args.out)
    elif args.command == "issue":
        if not args.subject:
            raise SystemExit("issue needs --subject (the holder's DID)")
        claims: dict[str, Any] = {"ageOver18": not args.not_over_18}
        if args.country:
            claims["countryOfResidence"] = args.country
        try:
            credential = issuer.issue(
                subject=args.subject,
                jwt=args.jwt or args.format == "jwt_vc_json",
                with_status=args.status,
                credential_type=args.type,
                claims=claims,
                valid_days=args.days,
            )
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        issuer.save(_path(args))
        if args.status and issuer.status:
            print(f"status index {issuer.status.next_index - 1}", file=sys.stderr)
        _write(credential, args.out)
    elif args.command == "status-list":
        if args.status_command == "create" and args.kind == "TokenStatusList":
            issuer.token_status_create(uri=args.url, size=args.size)
            issuer.save(_path(args))
            print(f"Status list {args.kind} at {args.url}")
        elif args.status_command == "create":
            issuer.status_list_create(url=args.url, kind=args.kind, size=args.size)
            issuer.save(_path(args))
            print(f"Status list {args.kind} at {args.url}")
        elif args.token:
            try:
                _write(issuer.token_status_list(), args.out)
            except ValueError as exc:
                raise SystemExit(str(exc)) from exc
        else:
            _write(issuer.status_list_credential(jwt=args.jwt), args.out)
    elif args.command == "revoke" and args.token:
        try:
            issuer.token_status_revoke(args.index)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        issuer.save(_path(args))
        print(f"Revoked index {args.index}", file=sys.stderr)
        if args.out:
            _write(issuer.token_status_list(), args.out)
    elif args.command == "revoke":
        try:
            issuer.revoke(args.index)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        issuer.save(_path(args))
        print(f"Revoked index {args.index}", file=sys.stderr)
        if args.out:
            _write(issuer.status_list_credential(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

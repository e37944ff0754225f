"""`cleanroom-issuer`: issue demo PersonhoodCredentials and publish a status list that revokes them.

    cleanroom-issuer init [--name NAME]                 new issuer key (issuer.json)
    cleanroom-issuer did                                print the issuer's DID
    cleanroom-issuer issue --subject DID [--jwt] [--days N] [--country NL] [--status] [--out FILE]
    cleanroom-issuer status-list create --url https://... [--kind StatusList2021|BitstringStatusList]
    cleanroom-issuer status-list publish [--out FILE] [--jwt]
    cleanroom-issuer revoke INDEX [--out FILE]          set the bit and republish

The issuer's state lives in --dir (or $CLEANROOM_ISSUER_DIR, default ./issuer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from identity.issuer.core import STATUS_KINDS, Issuer


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
    init.add_argument("--force", action="store_true")
    commands.add_parser("did", help="print the issuer's DID")
    issue = commands.add_parser("issue", help="issue a PersonhoodCredential")
    issue.add_argument("--subject", required=True, help="the holder's DID (cleanroom-wallet did)")
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
    create.add_argument("--kind", choices=STATUS_KINDS, default="StatusList2021")
    create.add_argument("--size", type=int, default=131072)
    publish = status_commands.add_parser("publish")
    publish.add_argument("--out", default=None)
    publish.add_argument("--jwt", action="store_true")
    revoke = commands.add_parser("revoke", help="revoke a credential by its status index")
    revoke.add_argument("index", type=int)
    revoke.add_argument("--out", default=None, help="also write the republished list here")
    args = parser.parse_args(argv)

    if args.command == "init":
        if _path(args).exists() and not args.force:
            raise SystemExit(f"An issuer already exists in {args.dir} (use --force to replace it).")
        issuer = Issuer.generate(args.name)
        issuer.save(_path(args))
        print(issuer.did)
        return 0
    issuer = _load(args)
    if args.command == "did":
        print(issuer.did)
    elif args.command == "issue":
        claims: dict[str, Any] = {"ageOver18": not args.not_over_18}
        if args.country:
            claims["countryOfResidence"] = args.country
        try:
            credential = issuer.issue(
                subject=args.subject,
                jwt=args.jwt,
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
        if args.status_command == "create":
            issuer.status_list_create(url=args.url, kind=args.kind, size=args.size)
            issuer.save(_path(args))
            print(f"Status list {args.kind} at {args.url}")
        else:
            _write(issuer.status_list_credential(jwt=args.jwt), args.out)
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

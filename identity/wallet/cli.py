"""`cleanroom-wallet`: a holder wallet for signing in to Clean room with a credential.

    cleanroom-wallet init                 create an Ed25519 did:key (stored encrypted)
    cleanroom-wallet did                  print this wallet's DID (give it to a W3C issuer)
    cleanroom-wallet jwk                  print the holder key SD-JWT VCs are bound to
    cleanroom-wallet import FILE|-        keep a credential (JSON-LD, JWT or SD-JWT VC)
    cleanroom-wallet list                 the credentials held
    cleanroom-wallet present URL          answer an OpenID4VP request (openid4vp:// link or QR
                                          payload, portal link, or request_uri)
    cleanroom-wallet login SERVICE_URL    sign in to the service's API and print the token

`present` and `login` check the request object's signature and client identifier first;
`--trust-verifier-ca PEM` names certificates an x509_san_dns verifier must chain to.

The wallet lives in --wallet (or $CLEANROOM_WALLET, default ~/.cleanroom-wallet); the
passphrase comes from $CLEANROOM_WALLET_PASSPHRASE or is asked for.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from identity.wallet import openid4vp
from identity.wallet.core import Wallet, WalletError, login, present_url


def _passphrase(confirm: bool = False) -> str:
    value = os.environ.get("CLEANROOM_WALLET_PASSPHRASE")
    if value:
        return value
    value = getpass.getpass("Wallet passphrase: ")
    if confirm and getpass.getpass("Again: ") != value:
        raise WalletError("The passphrases differ.")
    if len(value) < 8:
        raise WalletError("Use a passphrase of at least 8 characters.")
    return value


def _client() -> httpx.Client:
    return httpx.Client(timeout=30, follow_redirects=False)


def _report(outcome_body: dict[str, Any], status_code: int) -> int:
    if outcome_body.get("verified"):
        print(f"Verified: signed in as {outcome_body.get('did')}")
        print(f"Credentials: {', '.join(map(str, outcome_body.get('credentials') or []))}")
        print(f"API token: {outcome_body.get('token')}")
        return 0
    print(f"Refused ({status_code}): {outcome_body.get('detail')}", file=sys.stderr)
    return 1


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cleanroom-wallet", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--wallet",
        default=os.environ.get("CLEANROOM_WALLET", str(Path.home() / ".cleanroom-wallet")),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create a new wallet key")
    init.add_argument("--force", action="store_true")
    commands.add_parser("did", help="print the wallet's DID")
    commands.add_parser("jwk", help="print the holder key (JWK) for SD-JWT VCs")
    imp = commands.add_parser("import", help="keep a credential")
    imp.add_argument("file", help="a credential file, or - for standard input")
    commands.add_parser("list", help="list credentials")
    present = commands.add_parser("present", help="answer a presentation request")
    present.add_argument("url")
    log_in = commands.add_parser("login", help="sign in to a service's API")
    log_in.add_argument("service_url", nargs="?", default="http://127.0.0.1:8000")
    for command in (present, log_in):
        command.add_argument(
            "--trust-verifier-ca",
            default=os.environ.get("CLEANROOM_WALLET_VERIFIER_CA"),
            help="PEM file of certificates x509_san_dns verifiers must chain to",
        )
    args = parser.parse_args(argv)
    directory = Path(args.wallet).expanduser()

    if args.command == "init":
        if (directory / "wallet.json").exists() and not args.force:
            raise WalletError(
                f"A wallet already exists in {directory} (use --force to replace it)."
            )
        passphrase = _passphrase(confirm=True)
        wallet = Wallet.generate()
        wallet.save(directory, passphrase)
        print(wallet.did)
        return 0
    if args.command == "did":
        document = directory / "wallet.json"
        if not document.exists():
            raise WalletError(f"No wallet in {directory}: run `cleanroom-wallet init` first.")
        print(json.loads(document.read_text())["did"])
        return 0
    if args.command == "jwk":
        document = directory / "wallet.json"
        if not document.exists():
            raise WalletError(f"No wallet in {directory}: run `cleanroom-wallet init` first.")
        public = json.loads(document.read_text()).get("holder_jwk")
        if public is None:  # a wallet made before SD-JWT VCs: make its holder key now
            passphrase = _passphrase()
            wallet = Wallet.load(directory, passphrase)
            wallet.save(directory, passphrase)
            public = wallet.holder_jwk
        print(json.dumps(public, separators=(",", ":")))
        return 0
    passphrase = _passphrase()
    wallet = Wallet.load(directory, passphrase)
    if args.command == "import":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        summary = wallet.credential_import(text)
        wallet.save(directory, passphrase)
        print(
            f"Imported credential {summary.number}: {', '.join(summary.types)} from {summary.issuer}"
        )
        return 0
    if args.command == "list":
        print(f"DID: {wallet.did}")
        for item in wallet.summaries():
            print(
                f"{item.number}. {', '.join(item.types)}  issuer {item.issuer}  "
                f"format {item.format}  expires {item.expires or 'never'}"
            )
        if not wallet.credentials:
            print("No credentials yet: ask an issuer for one and `cleanroom-wallet import` it.")
        return 0
    anchors = (
        openid4vp.certificates_load(Path(args.trust_verifier_ca).read_bytes())
        if args.trust_verifier_ca
        else []
    )
    with _client() as client:
        if args.command == "present":
            outcome = present_url(wallet, args.url, client=client, trusted_certificates=anchors)
        else:
            outcome = login(wallet, args.service_url, client=client, trusted_certificates=anchors)
    if outcome.verified:
        wallet.save(directory, passphrase)
    return _report(outcome.body, outcome.status_code)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except WalletError as exc:
        print(f"cleanroom-wallet: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"cleanroom-wallet: cannot reach the service ({exc})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

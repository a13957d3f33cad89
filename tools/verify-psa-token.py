#!/usr/bin/env python3
"""A check of tzmk's PSA attestation tokens by a verifier outside this project.

`tzmk verify` and attestation-pd's encoder share this project's reading of RFC 9052 and
RFC 9783; this script verifies the same token with pycose (COSE) and cbor2 (CBOR), written
independently of both, so that a misreading shared by the Rust encoder and verifier shows up.
tools/tzmk/tests/verify.rs runs it when python3 has pycose and cbor2
(`pip install pycose cbor2`).

    verify-psa-token.py --token T --key K --nonce HEX --refs refs.json

--key: the attestation public key, the 65-byte SEC1 uncompressed point, binary or hex text.
--refs: the reference values of `tzmk verify` (docs/trusted-boot.md, "Tools").
Exit codes as `tzmk verify`: 0 accepted, 1 rejected, 2 unusable input.
"""

import argparse
import hashlib
import json
import sys

import cbor2
from pycose.algorithms import Es256
from pycose.headers import Algorithm
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message

PROFILE = "tag:psacertified.org,2023:psa#tfm"
# Claim keys: EAT (RFC 9711) nonce, ueid, eat_profile; RFC 9783 psa-* claims.
NONCE, UEID, EAT_PROFILE = 10, 256, 265
CLIENT_ID, LIFECYCLE, IMPLEMENTATION_ID, SOFTWARE_COMPONENTS = 2394, 2395, 2396, 2399
MANDATORY = [NONCE, UEID, EAT_PROFILE, CLIENT_ID, LIFECYCLE, IMPLEMENTATION_ID, SOFTWARE_COMPONENTS]


class Rejected(Exception):
    """The token fails a check."""


class Unusable(Exception):
    """An input cannot be used."""


def read_key(path):
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        raise Unusable(f"key {path}: {e}")
    if not (len(raw) == 65 and raw[0] == 0x04):
        try:
            raw = bytes.fromhex(raw.decode().strip())
        except ValueError as e:
            raise Unusable(f"key {path}: {e}")
    if len(raw) != 65 or raw[0] != 0x04:
        raise Unusable(f"key {path}: not a 65-byte uncompressed point")
    return raw


def read_refs(path):
    try:
        refs = json.load(open(path))
        return {
            "implementation_id": bytes.fromhex(refs["implementation_id"]),
            "components": [
                (c["measurement_type"], bytes.fromhex(c["measurement_value"]), bytes.fromhex(c["signer_id"]), c["version"])
                for c in refs["components"]
            ],
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unusable(f"refs {path}: {e}")


def verify(token, point, nonce, refs):
    """Checks the token; returns the claims or raises Rejected."""
    try:
        outer = cbor2.loads(token)
    except Exception as e:  # cbor2 raises several types on malformed input
        raise Rejected(f"token: not CBOR: {e}")
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != 18:
        raise Rejected("token: not tagged 18 (COSE_Sign1)")
    # cbor2 >= 6 decodes arrays and maps inside a tag as tuple and frozendict.
    if not isinstance(outer.value, (list, tuple)) or len(outer.value) != 4:
        raise Rejected("token: not a COSE_Sign1 array of 4")
    protected_bytes, unprotected, payload, signature = outer.value
    if not isinstance(protected_bytes, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise Rejected("token: COSE_Sign1 members of the wrong type")
    # The algorithm must be in the protected (signed) header: RFC 9052 §3.1 allows either bucket,
    # pycose looks in both, so this is checked on the raw protected bytes.
    protected = cbor2.loads(protected_bytes) if protected_bytes else {}
    if protected.get(1) != -7:
        raise Rejected(f"alg: protected header {protected!r}, expected {{1: -7}} (ES256)")

    # pycose 1.1.0's Sign1Message.decode wants a list and a dict where cbor2 >= 6 gives a tuple
    # and a frozendict, so the message is built from the parts as pycose's decode would.
    try:
        message = Sign1Message.from_cose_obj([protected_bytes, dict(unprotected), payload, signature], True)
    except Exception as e:
        raise Rejected(f"token: pycose cannot read it: {e}")
    if message.phdr.get(Algorithm) is not Es256:
        raise Rejected("alg: pycose does not read ES256 from the protected header")
    message.key = EC2Key(crv=P256, x=point[1:33], y=point[33:65])
    if not message.verify_signature():
        raise Rejected("signature: does not verify with the attestation key")

    claims = cbor2.loads(message.payload)
    if not isinstance(claims, dict):
        raise Rejected("claims: not a map")
    for key in MANDATORY:
        if key not in claims:
            raise Rejected(f"claim {key}: missing")
    if claims[NONCE] != nonce:
        raise Rejected("nonce (10): does not match the challenge")
    if claims[EAT_PROFILE] != PROFILE:
        raise Rejected(f"profile (265): {claims[EAT_PROFILE]!r}")
    # Instance id: 0x01 (UEID type RAND) || SHA-256 of the uncompressed public key.
    if claims[UEID] != b"\x01" + hashlib.sha256(point).digest():
        raise Rejected("instance id (256): not 0x01 || SHA-256(public key)")
    if not isinstance(claims[CLIENT_ID], int) or claims[CLIENT_ID] == 0:
        raise Rejected("client id (2394): not a non-zero integer")
    if not 0x3000 <= claims[LIFECYCLE] <= 0x30FF:
        raise Rejected(f"security lifecycle (2395): {claims[LIFECYCLE]:#x} is not SECURED")
    if claims[IMPLEMENTATION_ID] != refs["implementation_id"]:
        raise Rejected("implementation id (2396): not the reference")
    components = claims[SOFTWARE_COMPONENTS]
    if not isinstance(components, list) or not components:
        raise Rejected("software components (2399): not a non-empty array")
    for index, c in enumerate(components):
        found = (c.get(1), c.get(2), c.get(5), c.get(4))
        if found not in refs["components"]:
            raise Rejected(f"software component [{index}] {c.get(1)!r}: not in the references")
        if c.get(6) != "sha-256" or len(c.get(2)) != 32:
            raise Rejected(f"software component [{index}]: measurement description {c.get(6)!r}")
    return claims


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--nonce", required=True)
    parser.add_argument("--refs", required=True)
    args = parser.parse_args()
    try:
        token = open(args.token, "rb").read()
        point = read_key(args.key)
        nonce = bytes.fromhex(args.nonce)
        refs = read_refs(args.refs)
    except (OSError, ValueError, Unusable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        claims = verify(token, point, nonce, refs)
    except Rejected as e:
        print(f"{args.token}: rejected: {e}", file=sys.stderr)
        return 1
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        print(f"{args.token}: rejected: claims: malformed ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    types = ", ".join(str(c.get(1)) for c in claims[SOFTWARE_COMPONENTS])
    print(f"{args.token}: accepted by pycose: profile {PROFILE}, components {types}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

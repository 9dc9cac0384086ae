"""Independent DSSE signer for custody-provenance's interop test.

Uses securesystemslib (the library behind python-tuf and in-toto) to make
keys and sign an in-toto Statement v1 carrying a SLSA Provenance v1
predicate in a DSSE envelope. Prints JSON on stdout:
  {"envelope": <DSSE JSON>, "keys": {"ed25519": <TUF key>, ...}}

Usage: sign_dsse.py SHA256_OF_ARTIFACT [KEYTYPE ...]
"""
import json
import sys

from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

digest = sys.argv[1]
kinds = sys.argv[2:] or ["ed25519", "ecdsa", "rsa"]
generate = {
    "ed25519": CryptoSigner.generate_ed25519,
    "ecdsa": CryptoSigner.generate_ecdsa,
    "rsa": CryptoSigner.generate_rsa,
}

statement = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "app.bin", "digest": {"sha256": digest}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {
                "workflow": {
                    "ref": "refs/heads/main",
                    "repository": "https://github.com/org/firmware",
                    "path": ".github/workflows/release.yml",
                }
            },
            "resolvedDependencies": [
                {
                    "uri": "git+https://github.com/org/firmware@refs/heads/main",
                    "digest": {"gitCommit": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"},
                }
            ],
        },
        "runDetails": {
            "builder": {"id": "https://github.com/actions/runner/github-hosted"},
            "metadata": {"invocationId": "run-1"},
        },
    },
}

envelope = Envelope(
    payload=json.dumps(statement).encode(),
    payload_type="application/vnd.in-toto+json",
    signatures={},
)
keys = {}
public_keys = []
for kind in kinds:
    signer = generate[kind]()
    envelope.sign(signer)
    keys[kind] = signer.public_key.to_dict()
    public_keys.append(signer.public_key)
# sanity: securesystemslib accepts its own envelope
envelope.verify(public_keys, len(public_keys))
print(json.dumps({"envelope": envelope.to_dict(), "keys": keys}))

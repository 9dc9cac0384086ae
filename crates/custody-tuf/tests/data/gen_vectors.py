"""Generate ECDSA P-384 / RSA-PSS / P-256 test vectors for custody-tuf.

Run once with the project venv (/work/main/.venv/bin/python gen_vectors.py);
the output (vectors.json) is committed. Uses python-tuf + securesystemslib to
build and sign real root metadata, so the Rust side is also checked against
python's canonical JSON.
"""
import json
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root, Key
from tuf.api.serialization.json import JSONSerializer


def hex_point(pub):
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()


def signer_for(priv, scheme, keytype, public_value, keyid):
    """(signer, key listed in root). securesystemslib only loads PEM keys, so
    the signer always carries the PEM form; the listed key may be hex."""
    pem = priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    signer = CryptoSigner(priv, SSlibKey(keyid, "rsa" if keytype == "rsa" else "ecdsa", scheme, {"public": pem}))
    return signer, SSlibKey(keyid, keytype, scheme, {"public": public_value})


def main():
    p384 = ec.generate_private_key(ec.SECP384R1())
    p384_pem = p384.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    p384_hex = hex_point(p384.public_key())
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256_hex = hex_point(p256.public_key())
    rsak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsak.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    s_p384_pem = signer_for(p384, "ecdsa-sha2-nistp384", "ecdsa", p384_pem, "a" * 64)
    s_p384_hex = signer_for(p384, "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384", p384_hex, "b" * 64)
    s_p256_hex = signer_for(p256, "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256", p256_hex, "c" * 64)
    s_rsa = signer_for(rsak, "rsassa-pss-sha256", "rsa", rsa_pem, "d" * 64)

    def root_with(signers, threshold):
        root = Root(expires=datetime(2030, 1, 1, tzinfo=timezone.utc))
        for s in signers:
            for role in ["root", "timestamp", "snapshot", "targets"]:
                root.add_key(s[1], role)
        root.roles["root"].threshold = threshold
        md = Metadata(root)
        for s in signers:
            md.sign(s[0], append=True)
        return json.loads(md.to_bytes(JSONSerializer(compact=True)))

    out = {
        "root_p384_pem_and_rsa": root_with([s_p384_pem, s_rsa], 2),
        "root_p384_hex": root_with([s_p384_hex], 1),
        "root_p256_hex": root_with([s_p256_hex], 1),
        # Same P-384 key under two key ids (PEM and hex): threshold 2 must NOT be met.
        "root_same_key_two_ids": root_with([s_p384_pem, s_p384_hex], 2),
    }
    with open("vectors.json", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

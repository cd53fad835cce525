"""The stack's S3: moto's server behind a guard (its management API closed, unsigned requests refused), bootstrapped
with an IAM user, its access key and policy and the two buckets, and checked to enforce request signing."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from batchml.stack.output import display, say
from batchml.stack.processes import base_env, spawn
from batchml.stack.state import (
    ARTIFACT_BUCKET,
    AWS_REGION,
    HOST,
    LANDING_BUCKET,
    PYTHON,
    S3_USER,
    StackError,
    StackState,
)


def start(stack: StackState) -> None:
    env = {
        **base_env(),
        # the first calls (the stack's own: create the IAM user, its key and its policy) are not checked;
        # every later request must be signed with a key of that user and be allowed by its policy
        "INITIAL_NO_AUTH_ACTION_COUNT": "3",
        "BATCHML_STACK_MOTO_SEED": str(stack.state["moto_seed"]),
    }
    spawn(stack, "moto-s3", [str(PYTHON), "-m", "batchml.stack", "_moto-server", "--port",
                             str(stack.ports["moto"])], env)


def bootstrap(stack: StackState, fresh: bool) -> None:
    """Create the IAM user, its access key and policy (the unauthenticated first calls), then the buckets."""
    import boto3
    from botocore.exceptions import ClientError

    endpoint = stack.urls["moto-s3"]
    aws = stack.state.get("aws", {})
    if fresh:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=AWS_REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        try:
            iam.create_user(UserName=S3_USER)
            key = iam.create_access_key(UserName=S3_USER)["AccessKey"]
            iam.put_user_policy(UserName=S3_USER, PolicyName="batchml-buckets",
                                PolicyDocument=json.dumps(bucket_policy()))
        except ClientError as exc:
            raise StackError(
                f"moto refused the stack's bootstrap calls ({exc}): another client used its unauthenticated "
                f"first calls. Run `bin/stack down`, then `bin/stack up`"
            ) from None
        new = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
        if aws and aws != new:
            say("note: the S3 access key changed (moto was called before the stack's bootstrap): "
                f"source {display(stack.env_file)} again")
        stack.state["aws"] = aws = new
        stack.save_state()
    s3 = client(stack)
    for bucket in (LANDING_BUCKET, ARTIFACT_BUCKET):
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StackError(f"moto refused to create bucket {bucket} with the stack's key: {exc}. "
                                 "Run `bin/stack down`, then `bin/stack up`") from None
    # authentication is enforced from now on: a request without a valid signature must be refused
    unsigned = unsigned_status(endpoint)
    wrong = client(stack, secret="not-the-secret")
    try:
        wrong.list_buckets()
        wrong_refused = False
    except ClientError:
        wrong_refused = True
    if unsigned < 400 or not wrong_refused:
        raise StackError("moto accepts unsigned or wrongly signed requests: authentication is not enforced. "
                         "Check INITIAL_NO_AUTH_ACTION_COUNT in the moto-s3 log (bin/stack logs moto-s3)")


def client(stack: StackState, secret: str | None = None):
    """A boto3 S3 client signing with the stack's key (or with `secret` instead of its secret key)."""
    import boto3

    aws = stack.state["aws"]
    return boto3.client("s3", endpoint_url=stack.urls["moto-s3"], region_name=AWS_REGION,
                        aws_access_key_id=aws["access_key_id"],
                        aws_secret_access_key=secret or aws["secret_access_key"])


def health(stack: StackState) -> tuple[bool, str]:
    if "aws" not in stack.state:
        return False, "not bootstrapped"
    names = {b["Name"] for b in client(stack).list_buckets()["Buckets"]}
    missing = {LANDING_BUCKET, ARTIFACT_BUCKET} - names
    if missing:
        return False, f"buckets missing: {sorted(missing)}"
    if unsigned_status(stack.urls["moto-s3"]) < 400:
        return False, "answers unsigned requests"
    return True, f"signed ListBuckets: {LANDING_BUCKET}, {ARTIFACT_BUCKET}; unsigned refused"


def bucket_policy() -> dict:
    resources = [f"arn:aws:s3:::{b}" for b in (LANDING_BUCKET, ARTIFACT_BUCKET)]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": resources + [r + "/*" for r in resources]},
            {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
        ],
    }


def unsigned_status(endpoint: str) -> int:
    import requests

    return requests.get(f"{endpoint}/{LANDING_BUCKET}", timeout=3).status_code


def serve_moto(port: int) -> None:
    """moto's server (as `moto_server` runs it) with its unauthenticated management API (/moto-api: reset, reset-auth,
    data dump with the secret keys) switched off, on 127.0.0.1. The random generator is seeded from the state, so
    the bootstrap calls give the same access key after every restart. The moto-s3 service's process
    (`python -m batchml.stack _moto-server --port N`)."""
    from moto.moto_api._internal import mock_random

    mock_random.seed(int(os.environ.pop("BATCHML_STACK_MOTO_SEED")))
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    refused = (b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>AccessDenied</Code><Message>Anonymous "
               b"requests are refused: sign them with the stack's key (AWS_* in stack.env)</Message></Error>\n")

    def guarded(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"moto's management API is disabled in the batchml stack\n"]
        enforced = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        if enforced and "HTTP_AUTHORIZATION" not in environ:
            # moto itself answers an unsigned request with a 500 (KeyError on the missing header): refuse it cleanly
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [refused]
        return app(environ, start_response)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not one log line per request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(HOST, port, guarded, threaded=True, request_handler=MotoRequestHandler)

"""A Standard Webhooks receiver for the sold-out webhook, checked by an implementation other
than the worker's: the `standardwebhooks` package from PyPI (scripts/webhook-receiver installs
it into a virtualenv and runs this file with it).

    webhook_receiver.py serve PORT   listen on 127.0.0.1:PORT; verify each POST with every secret
                                     in SOLD_OUT_WEBHOOK_SECRET (space-separated), print one line
                                     per request, answer 204 (verified) or 401 (not)
    webhook_receiver.py verify       read {"secrets": [...], "requests": [{"headers", "body"}]}
                                     on stdin; exit 1 unless every request verifies with every
                                     secret and its body is the event its webhook-id names
                                     (the worker's tests)
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def check(secrets, headers, body):
    """The event, if `body` verifies with each secret and is the event `webhook-id` names."""
    event = None
    for secret in secrets:
        event = Webhook(secret).verify(body, headers)
    if event.get("event_id") != headers.get("webhook-id"):
        raise WebhookVerificationError("the body is not the event webhook-id names")
    return event


def verify():
    given = json.load(sys.stdin)
    for number, request in enumerate(given["requests"], 1):
        try:
            check(given["secrets"], request["headers"], request["body"])
        except Exception as error:  # noqa: BLE001 - any failure is a refusal
            print(f"request {number} ({request['headers'].get('webhook-id')}): {error!r}")
            return 1
    print(f"verified {len(given['requests'])} requests with {len(given['secrets'])} secrets each")
    return 0


class Handler(BaseHTTPRequestHandler):
    secrets = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = check(self.secrets, headers, body)
        except Exception as error:  # noqa: BLE001 - any failure is a refusal
            print(f"REFUSED webhook-id={headers.get('webhook-id')} ({error})", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        print(
            f"received webhook-id={headers['webhook-id']} "
            f"timestamp={headers['webhook-timestamp']} signature verified with "
            f"{len(self.secrets)} secret(s): schedule {event['schedule_id']} of concert "
            f"{event['concert_id']} \"{event['concert_title']}\" sold out at {event['sold_out_at']}",
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the line above says it all
        pass


def serve(port):
    Handler.secrets = os.environ["SOLD_OUT_WEBHOOK_SECRET"].split()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"webhook receiver listening on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["verify"]:
        sys.exit(verify())
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(int(sys.argv[2]))
    else:
        sys.exit(__doc__)

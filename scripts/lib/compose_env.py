"""Prints one compose service's environment as KEY=VALUE lines, for running its binary locally.

Reads `docker-compose config` (compose.yaml with every variable resolved) on stdin. Each URL
naming another compose service by hostname (postgres, redis, payment-svc, ...) is pointed at
127.0.0.1 instead, where the same servers listen on the same ports outside Docker; nothing else
changes. Usage: docker-compose config | python3 compose_env.py SERVICE
"""

import re
import sys

import yaml  # python3-yaml, a dependency of Debian's docker-compose


def main() -> None:
    config = yaml.safe_load(sys.stdin)
    services = config["services"]
    name = sys.argv[1]
    if name not in services:
        sys.exit(f"error: compose.yaml has no service {name!r}")
    environment = services[name].get("environment") or {}
    if isinstance(environment, list):  # the KEY=VALUE list form
        environment = dict(item.split("=", 1) for item in environment)
    hosts = "|".join(re.escape(service) for service in services)
    # scheme://[user[:password]@]HOST[:port]... with HOST a service name
    service_url = re.compile(rf"^(\w[\w+.-]*://(?:[^@/]*@)?)({hosts})(?=[:/]|$)")
    for key, value in sorted(environment.items()):
        value = "" if value is None else str(value)
        if "\n" in value:
            sys.exit(f"error: {name}.{key} spans several lines")
        local = service_url.sub(r"\g<1>127.0.0.1", value)
        print(f"{key}={local}")


if __name__ == "__main__":
    main()

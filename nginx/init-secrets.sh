#!/bin/sh
# Prepare what nginx reads but the repo must not hold:
#   - a TLS certificate: kept if one is mounted at $CERT_DIR/tls.crt + tls.key (production),
#     otherwise a self-signed one for $TLS_HOSTNAME is made (local use);
#   - the htpasswd file for /dashboard/, from $DASHBOARD_USER and $DASHBOARD_PASSWORD.
# Needs only a POSIX shell and openssl (compose runs it in the alpine/openssl image).
set -eu

CERT_DIR=${CERT_DIR:?set CERT_DIR}
AUTH_DIR=${AUTH_DIR:?set AUTH_DIR}
DASHBOARD_USER=${DASHBOARD_USER:?set DASHBOARD_USER}
DASHBOARD_PASSWORD=${DASHBOARD_PASSWORD:?set DASHBOARD_PASSWORD}
TLS_HOSTNAME=${TLS_HOSTNAME:-localhost}

mkdir -p "$CERT_DIR" "$AUTH_DIR"

if [ -s "$CERT_DIR/tls.crt" ] && [ -s "$CERT_DIR/tls.key" ]; then
    echo "init-secrets: using the certificate in $CERT_DIR"
else
    echo "init-secrets: making a self-signed certificate for $TLS_HOSTNAME"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
        -subj "/CN=$TLS_HOSTNAME" \
        -addext "subjectAltName=DNS:$TLS_HOSTNAME,DNS:localhost,IP:127.0.0.1" \
        -keyout "$CERT_DIR/tls.key" -out "$CERT_DIR/tls.crt" 2>/dev/null
    chmod 600 "$CERT_DIR/tls.key"
fi

# The password goes through stdin, never on a command line.
hash=$(printf '%s' "$DASHBOARD_PASSWORD" | openssl passwd -apr1 -stdin)
umask 077
printf '%s:%s\n' "$DASHBOARD_USER" "$hash" > "$AUTH_DIR/htpasswd.tmp"
chmod 644 "$AUTH_DIR/htpasswd.tmp"  # nginx workers run as an unprivileged user
mv "$AUTH_DIR/htpasswd.tmp" "$AUTH_DIR/htpasswd"
echo "init-secrets: wrote $AUTH_DIR/htpasswd for user $DASHBOARD_USER"

#!/bin/sh
# Writes one Scheduled CloudPhone per vendor instance id read from stdin (one a line), named
# kiosk-0001, kiosk-0002, ... with its own vendor user u-kiosk-0001, ...:
#   ./phones.sh < instance-ids.txt > phones.yaml && kubectl apply --server-side -f phones.yaml
# NAMESPACE (team-a), SCHEDULE (office), ACCOUNT (team-a) and IDLE_TIMEOUT (30m) override the defaults.
set -eu
namespace=${NAMESPACE:-team-a}
schedule=${SCHEDULE:-office}
account=${ACCOUNT:-team-a}
idle=${IDLE_TIMEOUT:-30m}
n=0
while IFS= read -r id || [ -n "$id" ]; do
  [ -n "$id" ] || continue
  n=$((n + 1))
  name=$(printf 'kiosk-%04d' "$n")
  cat <<YAML
---
apiVersion: cloudphone.io/v1alpha1
kind: CloudPhone
metadata:
  name: $name
  namespace: $namespace
spec:
  instanceId: "$id"
  lifecycle: Scheduled
  scheduleRef: {name: $schedule}
  userId: u-$name
  idleTimeout: $idle
  accountRef: {name: $account}
YAML
done

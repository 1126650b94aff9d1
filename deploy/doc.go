// Package deploy owns the broker's deployment: the container image
// (Dockerfile) and the Kubernetes manifests, a kustomize base (base/), its
// overlays (overlays/production, overlays/production-with-redis) and an
// optional component (components/redis, a Redis inside the cluster).
//
// The package has no code. Its test renders every overlay with the
// kustomize pinned in .ci/tools/go.mod and checks the invariants a
// production install depends on on the rendered YAML: replicas and their
// spread, probes on the admin listener, the pod's hardening, the
// PodDisruptionBudget and NetworkPolicy, a grace period above the drain,
// GOMEMLIMIT below the memory limit, every file a flag names mounted from
// a Secret or ConfigMap, and Prometheus' scrape of /metrics. docs/DEPLOY.md
// walks an operator through an install.
package deploy

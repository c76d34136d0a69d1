# Pinned versions (must match go.mod: k8s.io/kubernetes, helm.sh/helm/v3).
K8S_VERSION=v1.35.4
HELM_VERSION=v3.20.2

"""The pods' identity: their ServiceAccount and, with `kubernetes.workload_identity`, the cloud identity it
is bound to (for object storage such as `checkpointing.storage`).

- aws: IAM Roles for Service Accounts (EKS): the ServiceAccount annotation `eks.amazonaws.com/role-arn`
  names the role; EKS injects web-identity credentials into pods that use the account.
- gcp: GKE Workload Identity: the annotation `iam.gke.io/gcp-service-account` names the Google service
  account (which must grant `roles/iam.workloadIdentityUser` to the Kubernetes account).
- azure: Azure AD Workload Identity (AKS): the annotation `azure.workload.identity/client-id` names the
  managed identity or application, and pods must carry the label `azure.workload.identity/use: "true"`
  for the webhook to inject the token.

The generated ServiceAccount is named `kubernetes.service_account`, or `metadata.name` when that is
null. Its name carries no content hash: the cloud side's trust (the IAM role's trust policy, the Google
service account's IAM binding, the federated credential) names it, so it must stay stable across specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plan import Plan

IDENTITY_ANNOTATIONS = {
    "aws": "eks.amazonaws.com/role-arn",
    "gcp": "iam.gke.io/gcp-service-account",
    "azure": "azure.workload.identity/client-id",
}
AZURE_USE_LABEL = "azure.workload.identity/use"


def service_account_name(plan: Plan) -> str | None:
    """The pods' ServiceAccount, or None for the namespace's default one."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if k8s.service_account is not None:
        return k8s.service_account
    if k8s.workload_identity is not None:
        return plan.spec.metadata.name
    return None


def pod_identity_labels(plan: Plan) -> dict[str, str]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if k8s.workload_identity is not None and k8s.workload_identity.provider == "azure":
        return {AZURE_USE_LABEL: "true"}
    return {}


def service_account(plan: Plan, labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any] | None:
    """The ServiceAccount bound to `kubernetes.workload_identity`, or None without one."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    identity = k8s.workload_identity
    if identity is None:
        return None
    name = service_account_name(plan)
    assert name is not None
    own = {**annotations, IDENTITY_ANNOTATIONS[identity.provider]: identity.identity}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": k8s.namespace,
            "labels": dict(labels),
            "annotations": dict(sorted(own.items())),
        },
    }

"""The pods' identity: their ServiceAccount and, with `kubernetes.workload_identity`, the cloud identity it
is bound to (for object storage such as `checkpointing.storage`).

- aws: IAM Roles for Service Accounts (EKS): the ServiceAccount annotation `eks.amazonaws.com/role-arn`
  names the role; EKS injects web-identity credentials into pods that use the account.
- gcp: GKE Workload Identity: the annotation `iam.gke.io/gcp-service-account` names the Google service
  account (which must grant `roles/iam.workloadIdentityUser` to the Kubernetes account).
- azure: Azure AD Workload Identity (AKS): the annotation `azure.workload.identity/client-id` names the
  managed identity or application, and pods must carry the label `azure.workload.identity/use: "true"`
  for the webhook to inject the token.

By default the pods reference an existing ServiceAccount: `kubernetes.service_account`, or `metadata.name`
when that is null and a `workload_identity` is set, or the namespace's default. It is a shared object,
which several runs (and the cloud side's trust: the IAM role's trust policy, the Google service
account's IAM binding, the federated credential) name, so its name carries no content hash.

With `kubernetes.create_service_account` ftc emits it (`k8s/serviceaccount.yaml`), made to outlive any
one run:
- labels that are the same for every run (`app.kubernetes.io/name` is the account's name, `component`
  is `identity`, `managed-by` ftc); no instance label, no spec labels, no content-hash annotation, so two
  runs applying it write the same object and neither's pruning selects it by a run label;
- `argocd.argoproj.io/sync-options: Prune=false,Delete=false`: Argo CD leaves it in place when the run's
  resources are pruned (it reports it as needing pruning instead of deleting it);
- `kustomize.toolkit.fluxcd.io/prune: disabled`: Flux's kustomize-controller skips it when garbage
  collecting the objects a Kustomization no longer lists.
Deleting a run's objects by its instance label (`kubectl delete -l app.kubernetes.io/instance=<run>`)
leaves it too. Remove it by hand when no run needs it any more.
"""

from __future__ import annotations

from typing import Any

from ..plan import Plan
from . import layout

# Annotations that keep GitOps tools from deleting the shared ServiceAccount along with one run.
KEEP_ANNOTATIONS = {
    "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
    "kustomize.toolkit.fluxcd.io/prune": "disabled",
}
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
    if k8s.workload_identity is not None or k8s.create_service_account:
        return plan.spec.metadata.name
    return None


def pod_identity_labels(plan: Plan) -> dict[str, str]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if k8s.workload_identity is not None and k8s.workload_identity.provider == "azure":
        return {AZURE_USE_LABEL: "true"}
    return {}


def service_account_labels(name: str) -> dict[str, str]:
    """Labels of the emitted ServiceAccount: the same for every run that uses it."""
    return {
        layout.NAME_LABEL: name,
        layout.COMPONENT_LABEL: "identity",
        layout.MANAGED_BY_LABEL: "ftc",
    }


def service_account(plan: Plan) -> dict[str, Any] | None:
    """The ServiceAccount ftc emits with `kubernetes.create_service_account`, or None."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if not k8s.create_service_account:
        return None
    name = service_account_name(plan)
    assert name is not None
    own = dict(KEEP_ANNOTATIONS)
    identity = k8s.workload_identity
    if identity is not None:
        own[IDENTITY_ANNOTATIONS[identity.provider]] = identity.identity
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": k8s.namespace,
            "labels": dict(sorted(service_account_labels(name).items())),
            "annotations": dict(sorted(own.items())),
        },
    }

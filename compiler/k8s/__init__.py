"""Kubernetes output of a plan.

- `targets`: the workload kinds ftc emits and the Kubernetes versions each needs;
- `layout`: paths, labels, annotations and budgets the pod and the rules share;
- `rules`: what in a spec would make the manifests wrong (read by the check stage);
- `pod`, `job`, `jobset`, `kubeflow`, `identity`: builders of the objects;
- `manifests`: the kustomize base under `k8s/` (read by the render stage);
- `validate`: `ftc validate --k8s` (kubectl kustomize and strict schemas).

`targets`, `layout` and `rules` import nothing from the render stage, so check can use them.
"""

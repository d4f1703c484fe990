"""Names shared by every CRI service."""

__all__ = ["CRI_NAMESPACE"]

# containerd's CRI keeps everything it manages in this namespace; crishim does the same
# so ctr -n k8s.io shows the same objects for both.
CRI_NAMESPACE = "k8s.io"

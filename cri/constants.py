"""Names shared by every CRI service."""

__all__ = ["CRI_NAMESPACE", "MAX_MESSAGE_BYTES"]

# containerd's CRI keeps everything it manages in this namespace; crishim does the same
# so ctr -n k8s.io shows the same objects for both.
CRI_NAMESPACE = "k8s.io"

# The largest gRPC message the daemon sends or takes: kubelet's limit too.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

"""The streaming side of the CRI: the server behind the URLs Exec, Attach and PortForward return."""

"""kisscluster: highly available KVM virtual machines on a pair of Linux nodes."""

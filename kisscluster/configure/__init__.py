"""kiss-configure, kiss-init and kiss-nuke-vm: git-synced rollout of the site to both nodes."""

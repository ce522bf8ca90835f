"""The virtual fleet: Debian Trixie nodes in systemd-nspawn, reached over real SSH on 127.77.0.0/16."""

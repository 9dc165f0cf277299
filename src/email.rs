//! The email firewall (`fw-email`): being written.

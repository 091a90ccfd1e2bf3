"""Logins: the SMTP and IMAP conversations, their shared probe (resolve, connect, TLS, replies), TLS
inspection, and the check that both logins reach the same mailbox."""

"""SSH + S3 test bed fixtures (sshd on 127.0.0.x, scram PostgreSQL on TCP, moto server)."""

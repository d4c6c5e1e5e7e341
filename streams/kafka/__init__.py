"""The only package that imports aiokafka: admin (topics), the client, and the error mapping."""

"""The local target: real servers on 127.0.0.1 standing in for AWS and EKS."""

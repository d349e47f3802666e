"""AWS actions (Secrets Manager, IAM, STS, CloudTrail) and what they share.

boto3 finds credentials, region and endpoint the usual way (``AWS_*`` variables,
profiles, instance roles; ``AWS_ENDPOINT_URL`` points tests at moto's server).
boto3 is synchronous: actions run their calls in a worker thread.
"""

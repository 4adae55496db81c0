"""docs/emulator.md, "STS and the metadata service": the official SDK's credential classes pointed at the
emulator at 127.0.0.1:9000 (tests/docs/test_snippets.py runs this file; tests/emulator/test_sts.py fetches
credentials with them)."""

# [START howto_emulator_sts_sdk]
from tencentcloud.common import credential

role = "qcs::cam::uin/100000000001:roleName/AirflowCvmExport"
sts = credential.STSAssumeRoleCredential(
    "AKIDEMULATOR", "emulator-secret-key", role, "airflow", endpoint="127.0.0.1:9000"
)
oidc = credential.OIDCRoleArnCredential("ap-guangzhou", "OIDC", "<a JWT>", role, "airflow", endpoint="127.0.0.1:9000")
credential.CVMRoleCredential._role_endpoint = "http://127.0.0.1:9000/latest/meta-data/cam/security-credentials/"
instance = credential.CVMRoleCredential()
# [END howto_emulator_sts_sdk]

"""docs/emulator.md, "Official clients": cos-python-sdk-v5 against the emulator at 127.0.0.1:9000.

tests/docs/test_snippets.py runs this file against a running emulator (on a free port instead of 9000)
after an export of img-centos01 to exports-1250000000.
"""

# [START howto_emulator_cos_sdk]
from qcloud_cos import CosConfig, CosS3Client

cos = CosS3Client(
    CosConfig(
        Region="ap-guangzhou",
        SecretId="AKIDEMULATOR",
        SecretKey="emulator-secret-key",
        IP="127.0.0.1",
        Port=9000,
        Scheme="http",
    )
)
cos.list_objects(Bucket="exports-1250000000", Prefix="img-centos01_")
cos.object_exists(Bucket="exports-1250000000", Key="img-centos01_system_snap-a90ff55d.raw")
# [END howto_emulator_cos_sdk]

assert cos.object_exists(Bucket="exports-1250000000", Key="img-centos01_system_snap-a90ff55d.raw")

"""docs/emulator.md, "Official clients": tencentcloud-sdk-python against the emulator at 127.0.0.1:9000.

tests/docs/test_snippets.py runs this file against a running emulator (on a free port instead of 9000).
"""

# [START howto_emulator_sdk]
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint="127.0.0.1:9000"))
cvm = cvm_client.CvmClient(credential.Credential("AKIDEMULATOR", "emulator-secret-key"), "ap-guangzhou", profile)
request = models.DescribeImagesRequest()
request.from_json_string('{"Filters": [{"Name": "tag:backup", "Values": ["nightly"]}]}')
print(cvm.DescribeImages(request).to_json_string())
# [END howto_emulator_sdk]

"""Uses the client `openapi-python-client` generated from the edge's document (package `xo_edge_client`, on
PYTHONPATH): a token from Basic credentials, a filtered listing with chosen fields, one object. Prints what it got as
JSON, for tests/openapi.rs to compare with the edge's own answers.

    python client_check.py BASE_URL USER PASSWORD
"""

import base64
import json
import sys

from xo_edge_client import AuthenticatedClient, Client
from xo_edge_client.api.users import create_authentication_token
from xo_edge_client.api.vms import get_vm, get_vms
from xo_edge_client.models import CreateAuthenticationTokenBody, Vm

base, user, password = sys.argv[1:4]
basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
with Client(base_url=base, headers={"Authorization": basic}) as c:
    answer = create_authentication_token.sync(client=c, body=CreateAuthenticationTokenBody(description="generated"))
token = answer.token.id
with AuthenticatedClient(base_url=base, token=token) as c:
    running = get_vms.sync(client=c, fields="uuid,name_label,power_state", filter_="power_state:Running")
    listed = [{"uuid": v.uuid, "name_label": v.name_label, "power_state": v.power_state.value} for v in running]
    vm = get_vm.sync(client=c, id=listed[0]["uuid"])
    assert isinstance(vm, Vm), vm
    one = {"uuid": vm.uuid, "name_label": vm.name_label, "type": vm.type_, "pool": vm.pool}
print(json.dumps({"expiration": answer.token.expiration, "listed": listed, "one": one}))

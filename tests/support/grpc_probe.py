"""An independent gRPC client (Python grpcio, from PyPI) against a running
stemforge coordinator: lists its services through server reflection
(grpcio-reflection speaks v1alpha), asks the standard health service, and
calls Jobs.ListJobs through message classes built from the reflected
descriptors alone, with and without the client token.

Usage: grpc_probe.py HOST:PORT CLIENT_TOKEN   (prints one JSON object)
"""

import json
import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, token = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(target)
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = DescriptorPool(db)
    jobs = pool.FindServiceByName("stemforge.v1.Jobs")
    tasks = pool.FindServiceByName("stemforge.v1.Tasks")

    health = health_pb2_grpc.HealthStub(channel)
    statuses = {}
    for name in ["", "stemforge.v1.Jobs", "stemforge.v1.Tasks"]:
        r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    method = jobs.FindMethodByName("ListJobs")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    list_jobs = channel.unary_unary(
        "/stemforge.v1.Jobs/ListJobs",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    listed = list_jobs(
        request_class(), metadata=[("authorization", "Bearer " + token)], timeout=10
    )
    try:
        list_jobs(request_class(), timeout=10)
        without_token = "OK"
    except grpc.RpcError as e:
        without_token = e.code().name

    print(
        json.dumps(
            {
                "services": services,
                "jobs_methods": sorted(m.name for m in jobs.methods),
                "tasks_methods": sorted(m.name for m in tasks.methods),
                "health": statuses,
                "jobs_listed": [j.job_id for j in listed.jobs],
                "without_token": without_token,
            }
        )
    )


if __name__ == "__main__":
    main()

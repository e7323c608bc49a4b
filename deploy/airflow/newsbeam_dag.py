"""Airflow DAG: one newsbeam run on Dataflow every 30 minutes, from the Flex Template
(deploy/flex-template; build it first, see README "Scheduled runs on Dataflow").

Each launch is a new run with its own run id; the job takes the dataset's writer lease itself,
so a launch that overlaps a run still writing --output fails at its start step without writing
anything (max_active_runs=1 keeps Airflow from trying). Copy this file into the DAGs folder of
an Airflow with apache-airflow-providers-google, and set the constants below.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

PROJECT = "PROJECT"
REGION = "europe-west1"
TEMPLATE = "gs://BUCKET/templates/newsbeam.json"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/REPO/newsbeam:0.1.0"

# The template's parameters (deploy/flex-template/metadata.json: newsbeam run's options, one
# value each) and Beam's sdk_container_image: the workers run the template's own image.
PARAMETERS = {
    "input": "gs://BUCKET/incoming/",
    "feeds": "gs://BUCKET/config/feeds.yaml",
    "output": "gs://BUCKET/news",
    "wait_for_lease_s": "600",
    "sdk_container_image": IMAGE,
}

with DAG(
    dag_id="newsbeam_ingest",
    schedule=dt.timedelta(minutes=30),
    start_date=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["newsbeam"],
) as dag:
    DataflowStartFlexTemplateOperator(
        task_id="newsbeam_run",
        project_id=PROJECT,
        location=REGION,
        body={
            "launchParameter": {
                # Dataflow job names need not be unique over time; the run id is.
                "jobName": "newsbeam-{{ ts_nodash | lower }}",
                "containerSpecGcsPath": TEMPLATE,
                "parameters": PARAMETERS,
                "environment": {"tempLocation": "gs://BUCKET/tmp", "maxWorkers": 4},
            }
        },
        wait_until_finished=True,
    )

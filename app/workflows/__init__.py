"""Workflows: several engine and analysis calls chained into one job (the demo, the case studies)."""

from lee.results import declare

declare("obd-case-study", "app.workflows.obd_case:ObdCaseStudy")
declare("movielens-case-study", "app.workflows.movielens_case:MovieLensCase")

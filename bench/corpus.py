"""The integration the reconcile and memory benches generate by the thousand:
every kind of setting once, as a list item under ``integrations:``."""

INTEGRATION = """\
  - uid: {uid}
    project: project-{project}
    name: {uid}
    state: {state}
    hipchat:
      endpoint: https://hipchat.example.com
      rooms:
        - id: {room}
          token: {{env: HIPCHAT_BENCH_TOKEN}}
      color: red
      notify: true
    display:
      attribute_list: [version, hostname]
    actions:
      - {{action: filter, attribute: "*", regex: ".*"}}
      - {{action: submit, attribute: datacenter, regex: "^nyc$"}}
    trigger:
      event: group
      frequency: 5m
      threshold: 50
"""

{#- Models build into the schema they name (`staging`, `marts`), not dbt's default
    `<target schema>_<custom schema>`: the warehouse layout is part of Duckherd's contract. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}

{#- Refunds an order version contributes to its day. A cancelled order contributes
    nothing: cancelling it already takes its sale out of gross, and the refund that
    returned the customer's money is that same reversal.
    v1 reproduces the historical bug: it subtracted the refund of a cancelled order as
    well, so the money of a paid-then-cancelled order was taken out twice.
    v2 is the fix. -#}
{% macro order_refunds(status_column, refund_column) -%}
    {%- if var('refund_logic', 'v2') == 'v1' -%}
        {{ refund_column }}
    {%- else -%}
        case when {{ status_column }} = 'cancelled' then 0 else {{ refund_column }} end
    {%- endif -%}
{%- endmacro %}

// The command protocol every engine follows (docs/rtl.md, "Timing"; the cycle model of
// runtime/arch/timing.py computes exactly this):
//
// * a 1-entry command register: the controller writes it in a cycle in which it is empty
//   (`issue`); it is full from the next cycle;
// * the engine takes the register's command in a cycle in which it has no command or its
//   command is in its last busy cycle; the taken command is current from the next cycle;
// * the current command starts in the first cycle in which its dependencies are met (`ready`,
//   and for a transfer the channel's `grant`); it is busy from that cycle on, for `duration`
//   cycles (FIXED) or until the datapath says `last`.
module bitmod_engine #(
  parameter int W = 32,       // command payload bits
  parameter bit FIXED = 1'b1  // busy for `duration` cycles (else until `last`)
) (
  input  logic         clk,
  input  logic         rst,
  input  logic         issue,
  input  logic [W-1:0] issue_payload,
  output logic         full,         // the command register
  output logic [W-1:0] pending,      // ... its command
  output logic         accept,       // the engine takes it this cycle
  output logic         has_current,
  output logic [W-1:0] current,      // the current command
  input  logic         ready,        // the current command's dependencies are met
  input  logic         grant,        // the channel (1 for engines without transfers)
  input  logic [31:0]  duration,     // FIXED: the current command's busy cycles (>= 1)
  input  logic         last,         // !FIXED: this busy cycle is the last
  output logic         start,        // the current command starts this cycle
  output logic         busy,         // started in an earlier cycle, not finished
  output logic         finishing,    // this cycle is the current command's last
  output logic         waiting,      // a current command that has not started
  output logic         done,         // the current command ends this cycle
  output logic [31:0]  left          // FIXED, busy: its busy cycles from this one on
);
  logic [31:0]  remaining;  // FIXED: busy cycles left after this one
  logic         ends_now;

  assign waiting = has_current && !busy;
  assign start = waiting && ready && grant;
  // a command taken when the current one is in its last cycle: "last" as seen at the start of
  // the cycle, so a command that starts now never hands over in the same cycle
  assign finishing = busy && (FIXED ? remaining == 32'd1 : last);
  assign ends_now = FIXED ? (start ? duration == 32'd1 : finishing) : (busy || start) && last;
  assign accept = full && (!has_current || finishing);
  assign done = ends_now;
  assign left = remaining;

  always_ff @(posedge clk) begin
    if (rst) begin
      full <= 1'b0;
      has_current <= 1'b0;
      busy <= 1'b0;
    end else begin
      if (issue) begin
        full <= 1'b1;
        pending <= issue_payload;
      end
      if (accept) begin
        has_current <= 1'b1;
        current <= pending;
        busy <= 1'b0;
        full <= 1'b0;
      end else if (ends_now) begin
        has_current <= 1'b0;
        busy <= 1'b0;
      end else if (start) begin
        busy <= 1'b1;
      end
      if (start) remaining <= duration - 32'd1;
      else if (busy) remaining <= remaining - 32'd1;
    end
  end
endmodule
